{{/* Chart name, overridable. */}}
{{- define "jlx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object's name: the release (= Experiment) name unless overridden. */}}
{{- define "jlx.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<fullname>-<component>", the prefix cut so the whole stays a 63-character DNS label. */}}
{{- define "jlx.componentName" -}}
{{- $root := index . 0 }}{{ $component := index . 1 -}}
{{- $room := sub 62 (len $component) | int -}}
{{- printf "%s-%s" (include "jlx.fullname" $root | trunc $room | trimSuffix "-") $component }}
{{- end }}

{{- define "jlx.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jlx.experimentName" -}}
{{- required "experiment.name is required" (.Values.experiment).name }}
{{- end }}

{{- define "jlx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jlx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jlx.labels" -}}
helm.sh/chart: {{ include "jlx.chart" . }}
{{ include "jlx.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: judgelab
judgelab.io/experiment: {{ include "jlx.experimentName" . }}
{{- end }}

{{/* Labels of one component: call with (list $ "judge-pool"). */}}
{{- define "jlx.componentLabels" -}}
{{ include "jlx.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "jlx.componentSelectorLabels" -}}
{{ include "jlx.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Image of a judgelab container: the GPU image when it asks for GPUs. */}}
{{- define "jlx.image" -}}
{{- $root := index . 0 }}{{ $gpus := index . 1 -}}
{{- $image := ternary $root.Values.gpuImage $root.Values.image (gt (int $gpus) 0) -}}
image: {{ printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) | quote }}
imagePullPolicy: {{ $image.pullPolicy }}
{{- end }}

{{- define "jlx.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities:
    drop: [ALL]
{{- end }}

{{/* Resources with `gpus` added as the GPU extended resource (request = limit). */}}
{{- define "jlx.resources" -}}
{{- $root := index . 0 }}{{ $resources := deepCopy (index . 1) }}{{ $gpus := int (index . 2) -}}
{{- if gt $gpus 0 }}
{{- $limits := default dict $resources.limits -}}
{{- $_ := set $limits $root.Values.gpuResource $gpus -}}
{{- $_ := set $resources "limits" $limits -}}
{{- end }}
{{- with $resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A container's resources from a services.<name> entry (cpu/memory are request and limit)
over the chart's own resources for it: call with (list $ $size $resources). */}}
{{- define "jlx.sizedResources" -}}
{{- $root := index . 0 }}{{ $size := index . 1 }}{{ $resources := deepCopy (default dict (index . 2)) -}}
{{- $requests := default dict $resources.requests }}{{ $limits := default dict $resources.limits -}}
{{- range $key := list "cpu" "memory" }}
{{- with index $size $key }}
{{- $_ := set $requests $key . }}{{ $_ := set $limits $key . }}
{{- end }}
{{- end }}
{{- if $requests }}{{ $_ := set $resources "requests" $requests }}{{ end }}
{{- if $limits }}{{ $_ := set $resources "limits" $limits }}{{ end }}
{{- include "jlx.resources" (list $root $resources $size.gpus) }}
{{- end }}

{{/* Environment every judgelab container gets. */}}
{{- define "jlx.env" -}}
- name: HOME
  value: /tmp
- name: JUDGELAB_CACHE
  value: /var/cache/judgelab/models
- name: HF_HOME
  value: /var/cache/judgelab/huggingface
- name: XDG_CACHE_HOME
  value: /var/cache/judgelab
- name: PYTHONUNBUFFERED
  value: "1"
{{- with .Values.redis.host }}
{{- $scheme := ternary "rediss" "redis" $.Values.redis.tls -}}
{{- if $.Values.redis.passwordSecret.name }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.redis.passwordSecret.name }}
      key: {{ $.Values.redis.passwordSecret.key }}
- name: REDIS_URL
  value: {{ printf "%s://:$(REDIS_PASSWORD)@%s:%d/%d" $scheme . (int $.Values.redis.port) (int $.Values.redis.db) | quote }}
{{- else }}
- name: REDIS_URL
  value: {{ printf "%s://%s:%d/%d" $scheme . (int $.Values.redis.port) (int $.Values.redis.db) | quote }}
{{- end }}
{{- end }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "jlx.envFrom" -}}
{{- with .Values.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Mounts every judgelab container gets (volumes from jlx.volumes). */}}
{{- define "jlx.volumeMounts" -}}
- name: experiment
  mountPath: /etc/judgelab
  readOnly: true
- name: tmp
  mountPath: /tmp
- name: cache
  mountPath: /var/cache/judgelab
{{- if .Values.persistence.enabled }}
- name: data
  mountPath: /var/lib/judgelab
{{- end }}
{{- end }}

{{- define "jlx.volumes" -}}
- name: experiment
  configMap:
    name: {{ include "jlx.componentName" (list . "experiment") }}
- name: tmp
  emptyDir: {}
- name: cache
  emptyDir: {}
{{- if .Values.persistence.enabled }}
- name: data
  persistentVolumeClaim:
    claimName: {{ default (include "jlx.componentName" (list . "data")) .Values.persistence.existingClaim }}
{{- end }}
{{- end }}

{{/* Pod-template metadata: labels, and a checksum so a changed spec rolls the pods. */}}
{{- define "jlx.podMetadata" -}}
{{- $root := index . 0 }}{{ $component := index . 1 -}}
metadata:
  labels:
    {{- include "jlx.componentLabels" (list $root $component) | nindent 4 }}
    judgelab.io/redis-client: "true"
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/experiment: {{ toYaml $root.Values.spec | sha256sum }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* Scheduling keys of one component's values. */}}
{{- define "jlx.scheduling" -}}
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

{{- define "jlx.podSpecCommon" -}}
{{- include "jlx.podSpecAs" (list . (include "jlx.fullname" .) false) }}
{{- end }}

{{/* Common pod fields under a given ServiceAccount: call with (list $ "name" tokenMounted). */}}
{{- define "jlx.podSpecAs" -}}
{{- $root := index . 0 -}}
serviceAccountName: {{ index . 1 }}
automountServiceAccountToken: {{ index . 2 }}
enableServiceLinks: false
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A Job's name, "<fullname>-<stage>-<unit>-<attempt>", hashed down to 58 characters so the
pod hostnames "<job>-<index>" of an indexed Job stay 63-character DNS labels. Call with
(list $ $job). */}}
{{- define "jlx.jobName" -}}
{{- $root := index . 0 }}{{ $job := index . 1 -}}
{{- $full := printf "%s-%s-%s-%d" (include "jlx.fullname" $root) $job.stage $job.unit (int $job.attempt) -}}
{{- if le (len $full) 58 }}
{{- $full }}
{{- else }}
{{- printf "%s-%s" ($full | trunc 47 | trimSuffix "-") ($full | sha256sum | trunc 10) }}
{{- end }}
{{- end }}

{{/* Labels of a Job and its pods that never change while the Job lives (its pod template is
immutable, so no chart version and no spec checksum): call with (list $ $job $component). */}}
{{- define "jlx.jobLabels" -}}
{{- $root := index . 0 }}{{ $job := index . 1 -}}
{{ include "jlx.componentSelectorLabels" (list $root (index . 2)) }}
app.kubernetes.io/part-of: judgelab
judgelab.io/experiment: {{ include "jlx.experimentName" $root }}
judgelab.io/stage: {{ $job.stage }}
judgelab.io/unit: {{ $job.unit }}
judgelab.io/attempt: {{ $job.attempt | quote }}
{{- end }}

{{/* Stages whose Jobs train (torchrun, indexed, on services.learner). */}}
{{- define "jlx.trainingStages" -}}
{{- list "train-judges" "train-policy" | toJson }}
{{- end }}

{{/* Whether any Job of the values trains (then the rendezvous Service exists): "true" or "". */}}
{{- define "jlx.anyTraining" -}}
{{- $stages := include "jlx.trainingStages" . | fromJsonArray -}}
{{- range .Values.jobs }}{{ if has .stage $stages }}true{{ end }}{{ end }}
{{- end }}

{{/* The ServiceAccount of train-policy pods (the only ones with an API token). */}}
{{- define "jlx.progressAccount" -}}
{{- include "jlx.componentName" (list . "progress") }}
{{- end }}

{{/* Names of the train-policy Jobs, whose rank 0 may patch their own progress annotation. */}}
{{- define "jlx.progressJobs" -}}
{{- $names := list -}}
{{- range .Values.jobs }}{{ if eq .stage "train-policy" }}
{{- $names = append $names (include "jlx.jobName" (list $ .)) }}
{{- end }}{{ end }}
{{- toJson $names }}
{{- end }}
