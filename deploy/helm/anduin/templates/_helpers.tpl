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

{{/* Where the Secret's files are mounted. */}}
{{- define "anduin.secretDir" -}}/etc/anduin/es{{- end }}

{{/* The bearer token file the output reads. */}}
{{- define "anduin.tokenFile" -}}
{{- default (printf "%s/token" (include "anduin.secretDir" .)) .Values.auth.tokenFile }}
{{- end }}

{{/* "true" when the Secret is mounted: a key of it is read as a file. */}}
{{- define "anduin.mountSecret" -}}
{{- $mode := .Values.auth.mode -}}
{{- if or (eq $mode "basic") (and (eq $mode "bearer") (not .Values.auth.tokenFile)) .Values.secret.caKey -}}
true
{{- end }}
{{- end }}

{{/* A size such as 2GiB, 512MiB or 1000000 in bytes (for the buffer alert). */}}
{{- define "anduin.bytes" -}}
{{- $s := toString . -}}
{{- $n := regexFind "^[0-9]+" $s | atoi -}}
{{- $unit := trimPrefix (regexFind "^[0-9]+" $s) $s | lower -}}
{{- $mult := get (dict "" 1 "b" 1 "kib" 1024 "mib" 1048576 "gib" 1073741824 "tib" 1099511627776 "kb" 1000 "mb" 1000000 "gb" 1000000000 "tb" 1000000000000) $unit -}}
{{- if not $mult }}{{ fail (printf "buffer.maxBytes: cannot read %q as a size" $s) }}{{ end -}}
{{- mul $n $mult -}}
{{- end }}

{{/*
The agent's config (anduin.yaml): .Values.config verbatim when set; otherwise generated from the
values, then .Values.extraConfig merged over it. Values are written with toJson (JSON is YAML), so no
value needs quoting by hand.
*/}}
{{- define "anduin.config" -}}
{{- if .Values.config }}
{{- if kindIs "string" .Values.config }}
{{- .Values.config }}
{{- else }}
{{- toYaml .Values.config }}
{{- end }}
{{- else }}
{{- $secretDir := include "anduin.secretDir" . -}}
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
    api: %s
    annotations: %s
  parse:
    type: parse
    from: [kubernetes]
    formats: %s
`
  (toJson .Values.dataDir) (toJson .Values.logLevel) (toJson .Values.shutdownTimeout)
  (toJson .Values.tail.paths) (toJson .Values.tail.exclude) (toJson .Values.tail.startAt)
  (toJson .Values.kubernetes.api) (toJson .Values.kubernetes.annotations) (toJson .Values.parse.formats)
  | fromYaml -}}
{{- if not (has .Values.kubernetes.api (list "in_cluster" "off")) }}
{{- fail (printf "kubernetes.api must be in_cluster or off, not %q" (toString .Values.kubernetes.api)) }}
{{- end }}
{{- if eq (toString .Values.kubernetes.api) "off" }}
{{- $_ := unset $base.filters.kubernetes "annotations" }}
{{- end }}
{{- $out := dict "from" (list "parse") "buffer" (dict "type" "disk" "max_bytes" .Values.buffer.maxBytes) -}}
{{- if eq .Values.output "elasticsearch" }}
{{- $_ := set $out "type" "elasticsearch" }}
{{- $_ := set $out "hosts" .Values.elasticsearch.hosts }}
{{- $_ := set $out "index" .Values.elasticsearch.index }}
{{- else if eq .Values.output "http" }}
{{- $_ := set $out "type" "http" }}
{{- $_ := set $out "uri" .Values.http.uri }}
{{- $_ := set $out "encoding" .Values.http.encoding }}
{{- else }}
{{- fail (printf "output must be elasticsearch or http, not %q" (toString .Values.output)) }}
{{- end }}
{{- $mode := .Values.auth.mode -}}
{{- if eq $mode "basic" }}
{{- $_ := set $out "user" .Values.auth.user }}
{{- $_ := set $out "password_file" (printf "%s/password" $secretDir) }}
{{- else if eq $mode "api_key" }}
{{- $_ := set $out "api_key" "${ANDUIN_API_KEY}" }}
{{- else if eq $mode "bearer" }}
{{- $_ := set $out "token_file" (include "anduin.tokenFile" .) }}
{{- else if ne $mode "none" }}
{{- fail (printf "auth.mode must be none, basic, api_key or bearer, not %q" (toString $mode)) }}
{{- end }}
{{- if .Values.secret.caKey }}
{{- $_ := set $out "tls" (dict "ca_file" (printf "%s/ca.crt" $secretDir)) }}
{{- end }}
{{- $_ := set $base "outputs" (dict .Values.output $out) }}
{{- if .Values.api.enabled }}
{{- $_ := set $base "api" (dict "address" (printf "0.0.0.0:%d" (int .Values.api.port)) "tap" true "tap_address" (printf "127.0.0.1:%d" (int .Values.api.tapPort))) }}
{{- end }}
{{- toYaml (mergeOverwrite $base (deepCopy .Values.extraConfig)) }}
{{- end }}
{{- end }}
