{{/*
A suspended CronJob whose job template runs one limi command to completion (a training run, an
evaluation), so that `kubectl create job --from=cronjob/<release>-<name> <job name>` starts one.
Call with (dict "root" $ "name" "train" "service" "trainer" "command" (list "limi-train")
"args" (list ...) "job" .Values.train "ports" .Values.trainer.ports).
"command" is the container command and "args" its arguments. The pod gets JOB_NAME (the Job's
name, for per-run paths such as --output-dir=/data/trainer/jobs/$(JOB_NAME)).
Exit codes 2 (bad configuration) and 3 (input that cannot be used) fail the Job at once instead
of being retried; other failures are retried up to backoffLimit (training resumes from its last
checkpoint).
*/}}
{{- define "limi.oneShotCronJob" -}}
{{- $root := .root -}}
{{- $job := .job -}}
{{- $labels := dict "root" $root "component" .name -}}
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ include "limi.fullname" $root }}-{{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "limi.labels" $labels | nindent 4 }}
spec:
  schedule: {{ $job.schedule | quote }}
  suspend: {{ $job.suspend }}
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 3
  failedJobsHistoryLimit: 3
  jobTemplate:
    metadata:
      labels:
        {{- include "limi.labels" $labels | nindent 8 }}
    spec:
      backoffLimit: {{ int64 $job.backoffLimit }}
      activeDeadlineSeconds: {{ int64 $job.activeDeadlineSeconds }}
      ttlSecondsAfterFinished: {{ int64 $job.ttlSecondsAfterFinished }}
      podFailurePolicy:
        rules:
          - action: FailJob
            onExitCodes:
              containerName: {{ .name }}
              operator: In
              # Bad usage or input, and a missing precondition (limi_core.exit_codes): retrying cannot help.
              values: [2, 5]
          - action: Ignore
            onPodConditions:
              - type: DisruptionTarget
                status: "True"
      template:
        metadata:
          labels:
            {{- include "limi.selectorLabels" $labels | nindent 12 }}
            {{- with $root.Values.common.podLabels }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with $root.Values.common.podAnnotations }}
          annotations:
            {{- toYaml . | nindent 12 }}
          {{- end }}
        spec:
          restartPolicy: Never
          serviceAccountName: {{ include "limi.fullname" $root }}
          automountServiceAccountToken: false
          {{- include "limi.podSecurity" $root | nindent 10 }}
          {{- with $job.nodeSelector }}
          nodeSelector:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $job.tolerations }}
          tolerations:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          containers:
            - name: {{ .name }}
              image: {{ include "limi.image" (dict "root" $root "name" .service "override" $job.image) | quote }}
              imagePullPolicy: {{ $root.Values.images.pullPolicy }}
              command:
                {{- range .command }}
                - {{ . | quote }}
                {{- end }}
              {{- with .args }}
              args:
                {{- range . }}
                - {{ include "limi.envValue" . | quote }}
                {{- end }}
              {{- end }}
              env:
                - name: JOB_NAME
                  valueFrom:
                    fieldRef:
                      fieldPath: metadata.labels['batch.kubernetes.io/job-name']
                {{- include "limi.commonEnv" (dict "root" $root "name" .service "ports" .ports "grace" 30 "dataDir" "/data") | nindent 16 }}
                - name: HF_HOME
                  value: /data/huggingface
                {{- with .env }}
                {{- toYaml . | nindent 16 }}
                {{- end }}
                {{- with $job.env }}
                {{- include "limi.envFromMap" . | nindent 16 }}
                {{- end }}
              {{- include "limi.resourcesWithGpus" (dict "resources" $job.resources "gpus" $job.gpus) | nindent 14 }}
              {{- include "limi.containerSecurity" $root | nindent 14 }}
              volumeMounts:
                - name: tmp
                  mountPath: /tmp
                - name: shm
                  mountPath: /dev/shm
                - name: data
                  mountPath: /data
          volumes:
            {{- include "limi.tmpVolume" $root | nindent 12 }}
            - name: shm
              emptyDir:
                medium: Memory
                sizeLimit: {{ $job.shmSize }}
            - name: data
              persistentVolumeClaim:
                claimName: {{ include "limi.dataClaim" $root }}
{{- end }}
