{{/*
The Deployment, Service and PodDisruptionBudget of one limi service (curator, sandbox, rollout,
evaluator). Each object has its own template file that calls one of these with
(dict "root" $ "name" "curator" "svc" .Values.curator ...). Extra keys for the Deployment:
"env" (more env entries as a list of dicts), "dataVolume" (true: the shared data claim at
/data; false: an emptyDir), "serviceAccount" (default "<release>"), "automountToken" (bool).
The service's values may set nodeSelector and tolerations (instead of common's) and shmSize
(an in-memory /dev/shm, for GPU work).
*/}}

{{- define "limi.serviceDeployment" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $labels := dict "root" $root "component" .name -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "limi.fullname" $root }}-{{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "limi.labels" $labels | nindent 4 }}
spec:
  replicas: {{ int64 $svc.replicas }}
  revisionHistoryLimit: 5
  strategy:
    {{- toYaml (default (dict "type" "RollingUpdate") $svc.strategy) | nindent 4 }}
  selector:
    matchLabels:
      {{- include "limi.selectorLabels" $labels | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "limi.selectorLabels" $labels | nindent 8 }}
        {{- with $root.Values.common.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ include "limi.envValue" $svc.ports.metrics | quote }}
        prometheus.io/path: /metrics
        {{- with $root.Values.common.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ default (include "limi.fullname" $root) .serviceAccount }}
      automountServiceAccountToken: {{ default false .automountToken }}
      terminationGracePeriodSeconds: {{ add (int64 $svc.shutdownGraceSeconds) 15 }}
      {{- include "limi.podSecurity" $root | nindent 6 }}
      {{- with (default $root.Values.common.nodeSelector $svc.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $root.Values.common.tolerations $svc.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.common.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "limi.image" (dict "root" $root "name" .name "override" $svc.image) | quote }}
          imagePullPolicy: {{ $root.Values.images.pullPolicy }}
          command: ["python", "-m", "limi_{{ .name }}"]
          ports:
            - name: grpc
              containerPort: {{ int64 $svc.ports.grpc }}
              protocol: TCP
            - name: metrics
              containerPort: {{ int64 $svc.ports.metrics }}
              protocol: TCP
          env:
            {{- include "limi.commonEnv" (dict "root" $root "name" .name "ports" $svc.ports "grace" $svc.shutdownGraceSeconds) | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $svc.env }}
            {{- include "limi.envFromMap" . | nindent 12 }}
            {{- end }}
          {{- include "limi.grpcProbes" (dict "root" $root "port" $svc.ports.grpc) | nindent 10 }}
          {{- include "limi.resourcesWithGpus" (dict "resources" $svc.resources "gpus" (default 0 $svc.gpus)) | nindent 10 }}
          {{- include "limi.containerSecurity" $root | nindent 10 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: data
              mountPath: /data
            {{- if $svc.shmSize }}
            - name: shm
              mountPath: /dev/shm
            {{- end }}
      volumes:
        {{- include "limi.tmpVolume" $root | nindent 8 }}
        {{- with $svc.shmSize }}
        - name: shm
          emptyDir:
            medium: Memory
            sizeLimit: {{ . }}
        {{- end }}
        - name: data
          {{- if .dataVolume }}
          persistentVolumeClaim:
            claimName: {{ include "limi.dataClaim" $root }}
          {{- else }}
          emptyDir:
            sizeLimit: {{ $root.Values.common.tmpSizeLimit }}
          {{- end }}
{{- end }}

{{- define "limi.grpcService" -}}
{{- $labels := dict "root" .root "component" .name -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "limi.fullname" .root }}-{{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "limi.labels" $labels | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "limi.selectorLabels" $labels | nindent 4 }}
  ports:
    - name: grpc
      port: {{ int64 .svc.ports.grpc }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    - name: metrics
      port: {{ int64 .svc.ports.metrics }}
      targetPort: metrics
      protocol: TCP
{{- end }}

{{/* A PodDisruptionBudget; call with (dict "root" $ "name" "curator" "pdb" .Values.curator.pdb). */}}
{{- define "limi.pdb" -}}
{{- $labels := dict "root" .root "component" .name -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "limi.fullname" .root }}-{{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "limi.labels" $labels | nindent 4 }}
spec:
  maxUnavailable: {{ int64 .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "limi.selectorLabels" $labels | nindent 6 }}
{{- end }}
