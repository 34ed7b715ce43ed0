{{/*
Names, labels, images and the addresses every component derives from the values.
Objects are named "<release>-<component>" so that kubectl commands in the docs are predictable.
*/}}

{{- define "limi.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end }}

{{/* Labels of every object; call with (dict "root" $ "component" "curator"). */}}
{{- define "limi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: limi
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "limi.selectorLabels" . }}
{{- end }}

{{/* The labels a selector matches; call with (dict "root" $ "component" "curator"). */}}
{{- define "limi.selectorLabels" -}}
app.kubernetes.io/name: limi
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Image of a limi component; call with (dict "root" $ "name" "trainer" "override" .Values.train.image). */}}
{{- define "limi.image" -}}
{{- $values := .root.Values.images -}}
{{- $repository := .override -}}
{{- if not $repository -}}
{{- $repository = printf "limi-%s" .name -}}
{{- with $values.registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}{{ end -}}
{{- end -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion $values.tag) -}}
{{- end }}

{{- define "limi.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s-nats:4222" (include "limi.fullname" .) -}}
{{- else -}}
{{- required "nats.url is required when nats.enabled is false: set it to the nats:// URL of a NATS server with JetStream" .Values.nats.url -}}
{{- end -}}
{{- end }}

{{- define "limi.policyEndpoint" -}}
{{- if .Values.vllm.enabled -}}
{{- printf "http://%s-vllm:8000/v1" (include "limi.fullname" .) -}}
{{- else -}}
{{- required "policy.endpoint is required when vllm.enabled is false: set it to an OpenAI-compatible URL ending in /v1" .Values.policy.endpoint -}}
{{- end -}}
{{- end }}

{{- define "limi.policyModel" -}}
{{- default .Values.vllm.servedModelName .Values.policy.model -}}
{{- end }}

{{- define "limi.sandboxNamespace" -}}
{{- default (printf "%s-sandbox" (include "limi.fullname" .)) .Values.sandbox.sessions.namespace -}}
{{- end }}

{{- define "limi.dataClaim" -}}
{{- if .Values.storage.create -}}
{{- printf "%s-data" (include "limi.fullname" .) -}}
{{- else -}}
{{- required "storage.existingClaim is required when storage.create is false: name a ReadWriteMany PersistentVolumeClaim" .Values.storage.existingClaim -}}
{{- end -}}
{{- end }}

{{/*
An environment variable value as text. Helm reads numbers from values as float64, which print
as 1.6777216e+07; whole numbers are printed as integers, lists joined with commas.
*/}}
{{- define "limi.envValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq (floor .) . }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else if kindIs "slice" . -}}
{{- join "," . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end }}

{{/* A name: value map as an env list; call with the map. Keys come out sorted. */}}
{{- define "limi.envFromMap" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ include "limi.envValue" $value | quote }}
{{- end }}
{{- end }}
