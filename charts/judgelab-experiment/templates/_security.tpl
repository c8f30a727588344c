{{/*
API security (values `security`): the services' TLS and bearer tokens, the token and CA the
study's own Jobs call them with, per-client limits. Everything renders nothing when unset.
Secrets are mounted outside /etc/judgelab (the experiment ConfigMap's read-only volume).
*/}}

{{- define "jlx.tlsDir" -}}/etc/judgelab-tls{{- end }}
{{- define "jlx.tokensDir" -}}/etc/judgelab-tokens{{- end }}
{{- define "jlx.clientTokenDir" -}}/etc/judgelab-client{{- end }}

{{/* "true" when the services serve TLS, else "". */}}
{{- define "jlx.tls" -}}
{{- if .Values.security.tls.secretName }}true{{ end }}
{{- end }}

{{/* Refuse token auth whose Jobs would have no token to call with. */}}
{{- define "jlx.securityChecks" -}}
{{- $security := .Values.security -}}
{{- if and $security.tokensSecret .Values.jobs (not $security.clientToken.secretName) }}
{{- fail "security.tokensSecret is set but security.clientToken.secretName is not: the study's Jobs could not call its services" }}
{{- end }}
{{- end }}

{{/* Environment of a service container: serve TLS, check tokens, enforce the limits. */}}
{{- define "jlx.securityServiceEnv" -}}
{{- $security := .Values.security -}}
{{- if $security.tls.secretName }}
- name: JUDGELAB_TLS_CERT_FILE
  value: {{ include "jlx.tlsDir" . }}/tls.crt
- name: JUDGELAB_TLS_KEY_FILE
  value: {{ include "jlx.tlsDir" . }}/tls.key
{{- end }}
{{- if $security.tokensSecret }}
- name: JUDGELAB_API_TOKENS
  value: {{ include "jlx.tokensDir" . }}
{{- end }}
{{- with $security.rateLimitPerSecond }}
- name: JUDGELAB_RATE_LIMIT_PER_S
  value: {{ . | toString | quote }}
{{- end }}
{{- with $security.rateLimitBurst }}
- name: JUDGELAB_RATE_LIMIT_BURST
  value: {{ int . | toString | quote }}
{{- end }}
{{- with $security.maxConcurrentPerClient }}
- name: JUDGELAB_MAX_CONCURRENT_PER_CLIENT
  value: {{ int . | toString | quote }}
{{- end }}
{{- with $security.maxRequestBytes }}
- name: JUDGELAB_MAX_REQUEST_BYTES
  value: {{ int64 . | toString | quote }}
{{- end }}
{{- end }}

{{- define "jlx.securityServiceMounts" -}}
{{- if .Values.security.tls.secretName }}
- name: tls
  mountPath: {{ include "jlx.tlsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.security.tokensSecret }}
- name: api-tokens
  mountPath: {{ include "jlx.tokensDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "jlx.securityServiceVolumes" -}}
{{- with .Values.security.tls.secretName }}
- name: tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.security.tokensSecret }}
- name: api-tokens
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* How a caller (Jobs, `helm test`) verifies the services: the CA of the TLS Secret only
(never its key), or the system's roots. */}}
{{- define "jlx.callerTlsEnv" -}}
{{- $tls := .Values.security.tls -}}
{{- if $tls.secretName }}
{{- if $tls.caKey }}
- name: JUDGELAB_CLIENT_CA_FILE
  value: {{ include "jlx.tlsDir" . }}/ca.crt
{{- else }}
- name: JUDGELAB_CLIENT_TLS
  value: "1"
{{- end }}
{{- with $tls.serverName }}
- name: JUDGELAB_CLIENT_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jlx.callerTlsMounts" -}}
{{- if and .Values.security.tls.secretName .Values.security.tls.caKey }}
- name: tls-ca
  mountPath: {{ include "jlx.tlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "jlx.callerTlsVolumes" -}}
{{- $tls := .Values.security.tls -}}
{{- if and $tls.secretName $tls.caKey }}
- name: tls-ca
  secret:
    secretName: {{ $tls.secretName }}
    defaultMode: 0444
    items:
      - key: {{ $tls.caKey }}
        path: ca.crt
{{- end }}
{{- end }}

{{/* A Job's environment, mounts and volumes: verify the services and send the Jobs' token. */}}
{{- define "jlx.securityClientEnv" -}}
{{- include "jlx.callerTlsEnv" . }}
{{- if .Values.security.clientToken.secretName }}
- name: JUDGELAB_CLIENT_TOKEN_FILE
  value: {{ include "jlx.clientTokenDir" . }}/token
{{- end }}
{{- end }}

{{- define "jlx.securityClientMounts" -}}
{{- include "jlx.callerTlsMounts" . }}
{{- if .Values.security.clientToken.secretName }}
- name: client-token
  mountPath: {{ include "jlx.clientTokenDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "jlx.securityClientVolumes" -}}
{{- include "jlx.callerTlsVolumes" . }}
{{- with .Values.security.clientToken.secretName }}
- name: client-token
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $.Values.security.clientToken.key }}
        path: token
{{- end }}
{{- end }}

{{/* The check of a service's gRPC health: kubelet's native gRPC probe in plaintext; with TLS
(which that probe cannot speak) an exec of `python3 -m judgelab.client.health` in the container,
verifying the certificate with the Secret's CA (health needs no token). Call with
(list $ "judge-pool"). */}}
{{- define "jlx.healthCheck" -}}
{{- $root := index . 0 }}{{ $component := index . 1 -}}
{{- $security := $root.Values.security -}}
{{- if $security.tls.secretName }}
exec:
  command:
    - python3
    - -m
    - judgelab.client.health
    - 127.0.0.1:{{ $root.Values.ports.grpc }}
    - --timeout=5
    - --server-name={{ default (include "jlx.componentName" (list $root $component)) $security.tls.serverName }}
    {{- if $security.tls.caKey }}
    - --ca-file={{ include "jlx.tlsDir" $root }}/{{ $security.tls.caKey }}
    {{- end }}
timeoutSeconds: 10
{{- else }}
grpc:
  port: {{ $root.Values.ports.grpc }}
{{- end }}
{{- end }}
