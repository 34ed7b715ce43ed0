{{/*
Pieces every limi pod shares: security contexts, image pull secrets, the environment every
service reads (limi_core.settings), gRPC health probes, and the writable /tmp.
*/}}

{{- define "limi.podSecurity" -}}
securityContext:
  {{- toYaml .Values.common.podSecurityContext | nindent 2 }}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "limi.containerSecurity" -}}
securityContext:
  {{- toYaml .Values.common.securityContext | nindent 2 }}
{{- end }}

{{/*
The settings every service shares, then its own addresses; call with
(dict "root" $ "name" "curator" "ports" .Values.curator.ports "grace" .Values.curator.shutdownGraceSeconds).
A service's LIMI_DATA_DIR is /data/<name>; one-shot commands get "dataDir" "/data", the root
they add their own folder to (limi-evaluate keeps its results in $LIMI_DATA_DIR/evaluator, the
evaluator service's folder, so both see the same store).
*/}}
{{- define "limi.commonEnv" -}}
{{- $root := .root -}}
{{- $prefix := printf "LIMI_%s_" (upper .name) -}}
- name: LIMI_NATS_URL
  value: {{ include "limi.natsUrl" $root | quote }}
- name: LIMI_DATA_DIR
  value: {{ default (printf "/data/%s" .name) .dataDir | quote }}
- name: LIMI_LOG_LEVEL
  value: {{ $root.Values.common.logLevel | quote }}
- name: LIMI_LOG_FORMAT
  value: {{ $root.Values.common.logFormat | quote }}
- name: LIMI_SHUTDOWN_GRACE_SECONDS
  value: {{ include "limi.envValue" .grace | quote }}
- name: LIMI_NATS_CONNECT_TIMEOUT_SECONDS
  value: {{ include "limi.envValue" $root.Values.common.natsConnectTimeoutSeconds | quote }}
- name: LIMI_MAX_MESSAGE_BYTES
  value: {{ include "limi.envValue" $root.Values.common.maxMessageBytes | quote }}
- name: LIMI_NATS_STREAM_REPLICAS
  value: {{ include "limi.envValue" (ternary $root.Values.nats.replicas 1 $root.Values.nats.enabled) | quote }}
- name: {{ $prefix }}GRPC_ADDRESS
  value: {{ printf "0.0.0.0:%s" (include "limi.envValue" .ports.grpc) | quote }}
- name: {{ $prefix }}METRICS_ADDRESS
  value: {{ printf "0.0.0.0:%s" (include "limi.envValue" .ports.metrics) | quote }}
- name: HOME
  value: /tmp
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end }}

{{/* Native gRPC probes on grpc.health.v1: startup and readiness ask the overall "" status (NOT_SERVING
     while NATS is lost or a consumer is down), liveness asks "liveness" (SERVING until shutdown, so
     someone else's outage never restarts the pod); call with (dict "root" $ "port" 50051). */}}
{{- define "limi.grpcProbes" -}}
{{- $probes := .root.Values.common.probes -}}
startupProbe:
  grpc:
    port: {{ int64 .port }}
  periodSeconds: {{ int64 $probes.startupPeriodSeconds }}
  failureThreshold: {{ int64 $probes.startupFailureThreshold }}
  timeoutSeconds: {{ int64 $probes.timeoutSeconds }}
readinessProbe:
  grpc:
    port: {{ int64 .port }}
  periodSeconds: {{ int64 $probes.readinessPeriodSeconds }}
  failureThreshold: 2
  timeoutSeconds: {{ int64 $probes.timeoutSeconds }}
livenessProbe:
  grpc:
    port: {{ int64 .port }}
    service: liveness
  periodSeconds: {{ int64 $probes.livenessPeriodSeconds }}
  failureThreshold: {{ int64 $probes.livenessFailureThreshold }}
  timeoutSeconds: {{ int64 $probes.timeoutSeconds }}
{{- end }}

{{/* Resources with a GPU count added to requests and limits; call with (dict "resources" ... "gpus" 1). */}}
{{- define "limi.resourcesWithGpus" -}}
{{- $resources := deepCopy .resources -}}
{{- if gt (int64 .gpus) 0 -}}
{{- $_ := set $resources.requests "nvidia.com/gpu" (int64 .gpus) -}}
{{- $_ := set $resources.limits "nvidia.com/gpu" (int64 .gpus) -}}
{{- end -}}
resources:
  {{- toYaml $resources | nindent 2 }}
{{- end }}

{{- define "limi.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.common.tmpSizeLimit }}
{{- end }}
