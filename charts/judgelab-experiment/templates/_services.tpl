{{/* The vLLM server of a service: a native sidecar, so the service starts once vLLM is up. */}}
{{- define "jlx.vllmSidecar" -}}
{{- $root := index . 0 }}{{ $vllm := index . 1 -}}
{{- $image := $root.Values.vllm.image -}}
- name: vllm
  image: {{ printf "%s:%s" $image.repository $image.tag | quote }}
  imagePullPolicy: {{ $image.pullPolicy }}
  restartPolicy: Always
  command: [vllm, serve]
  args:
    - {{ required "vllm.model is required when vllm.enabled" $vllm.model | quote }}
    - --host=0.0.0.0
    - --port={{ $root.Values.vllm.port }}
    {{- with $vllm.servedModelName }}
    - --served-model-name={{ . }}
    {{- end }}
    {{- if gt (int $vllm.gpus) 1 }}
    - --tensor-parallel-size={{ $vllm.gpus }}
    {{- end }}
    {{- if $vllm.lora }}
    - --enable-lora
    {{- end }}
    {{- range $vllm.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: HOME
      value: /tmp
    - name: HF_HOME
      value: /var/cache/judgelab/huggingface
    - name: XDG_CACHE_HOME
      value: /var/cache/judgelab
    - name: VLLM_CACHE_ROOT
      value: /var/cache/judgelab/vllm
    {{- if $vllm.lora }}
    - name: VLLM_ALLOW_RUNTIME_LORA_UPDATING
      value: "True"
    {{- end }}
    {{- with $vllm.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with include "jlx.envFrom" $root | trim }}{{ . | nindent 2 }}{{- end }}
  ports:
    - name: vllm
      containerPort: {{ $root.Values.vllm.port }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /health
      port: vllm
    periodSeconds: 10
    failureThreshold: {{ $root.Values.vllm.startupFailureThreshold }}
  readinessProbe:
    httpGet:
      path: /health
      port: vllm
    periodSeconds: 10
  livenessProbe:
    httpGet:
      path: /health
      port: vllm
    periodSeconds: 20
    timeoutSeconds: 5
    failureThreshold: 3
  {{- with include "jlx.resources" (list $root $vllm.resources $vllm.gpus) | trim }}{{ . | nindent 2 }}{{- end }}
  {{- include "jlx.containerSecurityContext" $root | trim | nindent 2 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: cache
      mountPath: /var/cache/judgelab
    - name: dshm
      mountPath: /dev/shm
    {{- if $root.Values.persistence.enabled }}
    - name: data
      mountPath: /var/lib/judgelab
      readOnly: true
    {{- end }}
{{- end }}

{{/* Deployment + Service of one gRPC service: call with
(list $ "judge-pool" .Values.judgePool .Values.services.judgePool). */}}
{{- define "jlx.service" -}}
{{- $root := index . 0 }}{{ $component := index . 1 }}{{ $values := index . 2 }}{{ $size := index . 3 -}}
{{- $name := include "jlx.componentName" (list $root $component) -}}
{{- $ports := $root.Values.ports -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "jlx.componentLabels" (list $root $component) | nindent 4 }}
spec:
  replicas: {{ $size.replicas }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "jlx.componentSelectorLabels" (list $root $component) | nindent 6 }}
  template:
    {{- include "jlx.podMetadata" (list $root $component) | trim | nindent 4 }}
    spec:
      {{- include "jlx.podSpecCommon" $root | trim | nindent 6 }}
      terminationGracePeriodSeconds: {{ add (int $root.Values.graceSeconds) 15 }}
      {{- if $values.vllm.enabled }}
      initContainers:
        {{- include "jlx.vllmSidecar" (list $root $values.vllm) | trim | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $component }}
          {{- include "jlx.image" (list $root $size.gpus) | trim | nindent 10 }}
          command:
            - judgelab
            - serve
            - {{ $component }}
            - /etc/judgelab/experiment.yaml
            - --host=0.0.0.0
            - --port={{ $ports.grpc }}
            - --metrics-port={{ $ports.metrics }}
            - --grace-s={{ $root.Values.graceSeconds }}
            {{- with $values.claimIdleMs }}
            - --claim-idle-ms={{ int . }}
            {{- end }}
            {{- with $root.Values.redis.waitSeconds }}
            - --redis-wait-s={{ . }}
            {{- end }}
            {{- range $values.judges }}
            - --judge={{ . }}
            {{- end }}
          {{- with $values.extraArgs }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          workingDir: {{ ternary "/var/lib/judgelab" "/tmp" $root.Values.persistence.enabled }}
          env:
            {{- include "jlx.env" $root | nindent 12 }}
            {{- with include "jlx.securityServiceEnv" $root | trim }}{{ . | nindent 12 }}{{- end }}
          {{- with include "jlx.envFrom" $root | trim }}{{ . | nindent 10 }}{{- end }}
          ports:
            - name: grpc
              containerPort: {{ $ports.grpc }}
              protocol: TCP
            - name: metrics
              containerPort: {{ $ports.metrics }}
              protocol: TCP
          startupProbe:
            {{- include "jlx.healthCheck" (list $root $component) | trim | nindent 12 }}
            periodSeconds: 10
            failureThreshold: {{ $root.Values.probes.startupFailureThreshold }}
          readinessProbe:
            {{- include "jlx.healthCheck" (list $root $component) | trim | nindent 12 }}
            periodSeconds: 10
            failureThreshold: 3
          livenessProbe:
            {{- include "jlx.healthCheck" (list $root $component) | trim | nindent 12 }}
            periodSeconds: 20
            {{- if not (include "jlx.tls" $root) }}
            timeoutSeconds: 5
            {{- end }}
            failureThreshold: 3
          {{- with include "jlx.sizedResources" (list $root $size $values.resources) | trim }}{{ . | nindent 10 }}{{- end }}
          {{- include "jlx.containerSecurityContext" $root | trim | nindent 10 }}
          volumeMounts:
            {{- include "jlx.volumeMounts" $root | nindent 12 }}
            {{- with include "jlx.securityServiceMounts" $root | trim }}{{ . | nindent 12 }}{{- end }}
      volumes:
        {{- include "jlx.volumes" $root | nindent 8 }}
        {{- with include "jlx.securityServiceVolumes" $root | trim }}{{ . | nindent 8 }}{{- end }}
        {{- if $values.vllm.enabled }}
        - name: dshm
          emptyDir:
            medium: Memory
            sizeLimit: {{ $root.Values.vllm.shmSize }}
        {{- end }}
      {{- with include "jlx.scheduling" $values | trim }}{{ . | nindent 6 }}{{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "jlx.componentLabels" (list $root $component) | nindent 4 }}
    judgelab.io/scrape: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "jlx.componentSelectorLabels" (list $root $component) | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $ports.grpc }}
      targetPort: grpc
      protocol: TCP
      {{- if not (include "jlx.tls" $root) }}
      appProtocol: kubernetes.io/h2c
      {{- end }}
    - name: metrics
      port: {{ $ports.metrics }}
      targetPort: metrics
      protocol: TCP
      appProtocol: http
    {{- if $values.vllm.enabled }}
    - name: vllm
      port: {{ $root.Values.vllm.port }}
      targetPort: vllm
      protocol: TCP
      appProtocol: http
    {{- end }}
{{- end }}
