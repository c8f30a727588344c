{{- define "jl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "judgelab" for a release named judgelab, else "<release>-judgelab" (overridable). */}}
{{- define "jl.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jl.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jl.labels" -}}
helm.sh/chart: {{ include "jl.chart" . }}
{{ include "jl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: judgelab
{{- end }}

{{/* Call with (list $ "operator"). */}}
{{- define "jl.componentLabels" -}}
{{ include "jl.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "jl.componentSelectorLabels" -}}
{{ include "jl.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "jl.operatorName" -}}
{{- printf "%s-operator" (include "jl.fullname" .) }}
{{- end }}

{{- define "jl.redisName" -}}
{{- printf "%s-redis" (include "jl.fullname" .) }}
{{- end }}

{{- define "jl.redisSecret" -}}
{{- default (include "jl.redisName" .) .Values.redis.auth.existingSecret }}
{{- end }}

{{- define "jl.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "jl.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities:
    drop: [ALL]
{{- end }}

{{- define "jl.podSecurity" -}}
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "jl.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Namespaces the operator installs experiments into. */}}
{{- define "jl.workloadNamespaces" -}}
{{- $op := .Values.operator -}}
{{- $namespaces := $op.workloadNamespaces | default $op.watchNamespaces | default (list .Release.Namespace) }}
{{- toJson (uniq $namespaces) }}
{{- end }}

{{/* Values every experiment release gets under the operator's own: images, Redis, extras. */}}
{{- define "jl.experimentValues" -}}
{{- $image := dict "repository" .Values.image.repository "tag" (default .Chart.AppVersion .Values.image.tag) "pullPolicy" .Values.image.pullPolicy -}}
{{- $gpu := dict "repository" .Values.gpuImage.repository "tag" (default .Chart.AppVersion .Values.gpuImage.tag) "pullPolicy" .Values.image.pullPolicy -}}
{{- $values := dict "image" $image "gpuImage" $gpu -}}
{{- with .Values.imagePullSecrets }}{{ $_ := set $values "imagePullSecrets" . }}{{ end -}}
{{- if .Values.redis.enabled -}}
{{- $secret := dict "name" (include "jl.redisSecret" .) "key" .Values.redis.auth.passwordKey -}}
{{- $host := printf "%s.%s.svc" (include "jl.redisName" .) .Release.Namespace -}}
{{- $_ := set $values "redis" (dict "host" $host "port" (int .Values.redis.port) "passwordSecret" $secret) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $values (deepCopy .Values.operator.experimentValues)) }}
{{- end }}
