{{/* Chart name, at most 63 characters. */}}
{{- define "anduin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name appended unless it already contains it. */}}
{{- define "anduin.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "anduin.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "anduin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "anduin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "anduin.labels" -}}
helm.sh/chart: {{ include "anduin.chart" . }}
{{ include "anduin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "anduin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "anduin.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "anduin.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The agent's config (anduin.yaml): generated from the values, then .Values.extraConfig merged over it.
Values are written with toJson (JSON is YAML), so no value needs quoting by hand.
*/}}
{{- define "anduin.config" -}}
{{- $es := .Values.elasticsearch -}}
{{- $base := printf `
data_dir: %s
log_level: %s
log_format: json
shutdown_timeout: %s
inputs:
  containers:
    type: tail
    paths: %s
    exclude: %s
    format: auto
    start_at: %s
filters:
  kubernetes:
    type: kubernetes
    from: [containers]
    api: in_cluster
    annotations: %s
  parse:
    type: parse
    from: [kubernetes]
    formats: %s
outputs:
  elasticsearch:
    type: elasticsearch
    from: [parse]
    hosts: %s
    user: %s
    password_file: /etc/anduin/es/password
    index: %s
    buffer: {type: disk, max_bytes: %s}
`
  (toJson .Values.dataDir) (toJson .Values.logLevel) (toJson .Values.shutdownTimeout)
  (toJson .Values.tail.paths) (toJson .Values.tail.exclude) (toJson .Values.tail.startAt)
  (toJson .Values.kubernetes.annotations) (toJson .Values.parse.formats)
  (toJson $es.hosts) (toJson $es.user) (toJson $es.index) (toJson $es.buffer.maxBytes)
  | fromYaml -}}
{{- if $es.secret.caKey }}
{{- $_ := set $base.outputs.elasticsearch "tls" (dict "ca_file" "/etc/anduin/es/ca.crt") }}
{{- end }}
{{- if .Values.api.enabled }}
{{- $_ := set $base "api" (dict "address" (printf "0.0.0.0:%d" (int .Values.api.port)) "tap" true "tap_address" (printf "127.0.0.1:%d" (int .Values.api.tapPort))) }}
{{- end }}
{{- toYaml (mergeOverwrite $base (deepCopy .Values.extraConfig)) }}
{{- end }}
