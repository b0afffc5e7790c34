{{/*
Names and labels.
*/}}
{{- define "agentops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentops.fullname" -}}
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

{{- define "agentops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of a component's objects: <fullname>-<component>, at most 63 characters. */}}
{{- define "agentops.componentName" -}}
{{- printf "%s-%s" (include "agentops.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentops.labels" -}}
helm.sh/chart: {{ include "agentops.chart" . }}
{{ include "agentops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentops
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* dict "root" $ "component" "ingest" */}}
{{- define "agentops.componentSelectorLabels" -}}
{{ include "agentops.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "agentops.componentLabels" -}}
{{ include "agentops.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "agentops.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "agentops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* store.url: scylla://h1:9042,h2:9042/<keyspace>?replication_factor=N&lwt=B&schema_agreement=B */}}
{{- define "agentops.storeUrl" -}}
{{- $s := .Values.scylla -}}
{{- printf "scylla://%s/%s?replication_factor=%d&lwt=%t&schema_agreement=%t" (join "," $s.hosts) $s.keyspace (int64 $s.replicationFactor) $s.lwt $s.schemaAgreement }}
{{- end }}

{{/* The Secret holding the JWT signing key, and its key. */}}
{{- define "agentops.jwtSecretName" -}}
{{- if .Values.authApi.jwt.existingSecret }}
{{- .Values.authApi.jwt.existingSecret }}
{{- else }}
{{- printf "%s-jwt" (include "agentops.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "agentops.jwtSecretKey" -}}
{{- if .Values.authApi.jwt.existingSecret }}
{{- .Values.authApi.jwt.existingSecretKey }}
{{- else }}
{{- "jwt-secret" }}
{{- end }}
{{- end }}

{{/* The model directory the scorer reads. */}}
{{- define "agentops.modelDir" -}}
{{- if eq .Values.scorer.models.source "image" }}
{{- .Values.scorer.models.imagePath }}
{{- else }}
{{- "/var/lib/agentops/models" }}
{{- end }}
{{- end }}

{{/*
The config.toml every service and job reads (AGENTOPS_CONFIG). Same layout as
settings/src/default.toml; the JWT secret is not here (environment, from a Secret).
Strings are written with toRawJson (a JSON string is a TOML basic string), numbers with int64
(values files give float64, which would print as 4.194304e+06).
*/}}
{{- define "agentops.configToml" -}}
{{- $v := .Values -}}
{{- $host := $v.listenHost -}}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end -}}
# Rendered by the agentops Helm chart from its values; do not edit in the cluster.
[kafka]
brokers = {{ $v.kafka.brokers | toRawJson }}
client_id = {{ $v.kafka.clientId | toRawJson }}
session_timeout_ms = {{ int64 $v.kafka.sessionTimeoutMs }}
heartbeat_interval_ms = {{ int64 $v.kafka.heartbeatIntervalMs }}
fetch_wait_max_ms = {{ int64 $v.kafka.fetchWaitMaxMs }}
partitions = {{ int64 $v.kafka.partitions }}
replication_factor = {{ int64 $v.kafka.replicationFactor }}

[kafka.topics]
task_events = {{ $v.kafka.topics.taskEvents | toRawJson }}
kpi_windows = {{ $v.kafka.topics.kpiWindows | toRawJson }}
anomalies = {{ $v.kafka.topics.anomalies | toRawJson }}
dead_letter = {{ $v.kafka.topics.deadLetter | toRawJson }}
late_events = {{ $v.kafka.topics.lateEvents | toRawJson }}

[schema_registry]
url = {{ $v.schemaRegistry.url | toRawJson }}

[events]
max_future_skew_secs = {{ int64 $v.events.maxFutureSkewSecs }}

[store]
url = {{ include "agentops.storeUrl" . | toRawJson }}
window_retention_days = {{ int64 $v.scylla.windowRetentionDays }}

[ingest]
listen = {{ printf "%s:%d" $host (int64 $v.ingest.port) | toRawJson }}
max_batch_events = {{ int64 $v.ingest.maxBatchEvents }}
max_body_bytes = {{ int64 $v.ingest.maxBodyBytes }}
delivery_timeout_ms = {{ int64 $v.ingest.deliveryTimeoutMs }}

[ingest.otlp]
cost_attribute = {{ $v.ingest.otlp.costAttribute | toRawJson }}
interventions_attribute = {{ $v.ingest.otlp.interventionsAttribute | toRawJson }}
task_attribute = {{ $v.ingest.otlp.taskAttribute | toRawJson }}
cancelled_error_types = {{ $v.ingest.otlp.cancelledErrorTypes | toRawJson }}

[ingest.otlp.prices]
{{- range $model, $p := $v.ingest.otlp.prices }}
{{ $model | toRawJson }} = { input_usd_per_mtok = {{ include "agentops.tomlFloat" $p.inputUsdPerMtok }}, output_usd_per_mtok = {{ include "agentops.tomlFloat" $p.outputUsdPerMtok }} }
{{- end }}

[aggregator]
consumer_group = {{ $v.aggregator.consumerGroup | toRawJson }}
assignment = {{ $v.aggregator.assignment | toRawJson }}
window_secs = {{ int64 $v.aggregator.windowSecs }}
allowed_lateness_secs = {{ int64 $v.aggregator.allowedLatenessSecs }}
checkpoint_interval_ms = {{ int64 $v.aggregator.checkpointIntervalMs }}
resume_rewind_records = {{ int64 $v.aggregator.resumeRewindRecords }}
finalize_days_by_clock = {{ $v.aggregator.finalizeDaysByClock }}
metrics_listen = {{ printf "%s:%d" $host (int64 $v.aggregator.metricsPort) | toRawJson }}

[scorer]
consumer_group = {{ $v.scorer.consumerGroup | toRawJson }}
assignment = {{ $v.scorer.assignment | toRawJson }}
model_dir = {{ include "agentops.modelDir" . | toRawJson }}
metrics_listen = {{ printf "%s:%d" $host (int64 $v.scorer.metricsPort) | toRawJson }}
resume_rewind_records = {{ int64 $v.scorer.resumeRewindRecords }}
max_batch = {{ int64 $v.scorer.maxBatch }}
reload_interval_ms = {{ int64 $v.scorer.reloadIntervalMs }}
onnxruntime_path = {{ $v.scorer.onnxruntimePath | toRawJson }}
intra_threads = {{ int64 $v.scorer.intraThreads }}

[auth_api]
listen = {{ printf "%s:%d" $host (int64 $v.authApi.port) | toRawJson }}
jwt_issuer = {{ $v.authApi.jwt.issuer | toRawJson }}
jwt_audience = {{ $v.authApi.jwt.audience | toRawJson }}
token_ttl_secs = {{ int64 $v.authApi.jwt.tokenTtlSecs }}
jwt_leeway_secs = {{ int64 $v.authApi.jwt.leewaySecs }}
bcrypt_cost = {{ int64 $v.authApi.bcrypt.cost }}
bcrypt_max_concurrent = {{ int64 $v.authApi.bcrypt.maxConcurrent }}
bcrypt_max_queue = {{ int64 $v.authApi.bcrypt.maxQueue }}
max_body_bytes = {{ int64 $v.authApi.maxBodyBytes }}
login_max_failures_per_account = {{ int64 $v.authApi.login.maxFailuresPerAccount }}
login_max_failures_per_client = {{ int64 $v.authApi.login.maxFailuresPerClient }}
login_failure_window_secs = {{ int64 $v.authApi.login.failureWindowSecs }}
user_cache_ttl_ms = {{ int64 $v.authApi.userCacheTtlMs }}
trust_forwarded_for = {{ $v.authApi.trustForwardedFor }}

[alerter]
consumer_group = {{ $v.alerter.consumerGroup | toRawJson }}
assignment = {{ $v.alerter.assignment | toRawJson }}
metrics_listen = {{ printf "%s:%d" $host (int64 $v.alerter.metricsPort) | toRawJson }}
quiet_secs = {{ int64 $v.alerter.quietSecs }}
resend_interval_secs = {{ int64 $v.alerter.resendIntervalSecs }}
checkpoint_interval_ms = {{ int64 $v.alerter.checkpointIntervalMs }}
resume_rewind_records = {{ int64 $v.alerter.resumeRewindRecords }}
link_base_url = {{ $v.alerter.linkBaseUrl | toRawJson }}
critical_ratio = {{ include "agentops.tomlFloat" $v.alerter.criticalRatio }}
request_timeout_ms = {{ int64 $v.alerter.requestTimeoutMs }}
retry_initial_ms = {{ int64 $v.alerter.retryInitialMs }}
retry_max_ms = {{ int64 $v.alerter.retryMaxMs }}
alertmanager_urls = {{ $v.alerter.alertmanagerUrls | toRawJson }}

[alerter.pagerduty]
url = {{ $v.alerter.pagerduty.url | toRawJson }}
{{- end }}

{{/* The Secret with the alerter's receiver secrets (keys `webhooks`, `pagerduty-routing-key`). */}}
{{- define "agentops.alerterSecretName" -}}
{{- if .Values.alerter.existingSecret }}
{{- .Values.alerter.existingSecret }}
{{- else }}
{{- printf "%s-alerter" (include "agentops.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* alerter.webhooks as a TOML array (the value of AGENTOPS__ALERTER__WEBHOOKS). */}}
{{- define "agentops.alerterWebhooksToml" -}}
[{{- range $i, $h := .Values.alerter.webhooks }}{{ if $i }}, {{ end }}{ name = {{ $h.name | toRawJson }}, url = {{ $h.url | toRawJson }}, secret = {{ $h.secret | toRawJson }} }{{- end }}]
{{- end }}

{{/*
Checks that values.schema.json cannot express (they compare two values). Included by the
ConfigMap, so `helm template`, `helm lint` and `helm install` all stop on them.
*/}}
{{- define "agentops.validate" -}}
{{- $v := .Values -}}
{{- $partitions := int64 $v.kafka.partitions -}}
{{- range $key := list "aggregator" "scorer" "alerter" }}
{{- $c := index $v $key }}
{{- if $c.enabled }}
{{- if eq $c.assignment "group" }}
{{- if gt (int64 $c.replicaCount) $partitions }}
{{- fail (printf "%s.replicaCount (%d) exceeds kafka.partitions (%d): a consumer beyond the partition count gets no partition and never becomes ready" $key (int64 $c.replicaCount) $partitions) }}
{{- end }}
{{- else if gt (int64 $c.replicaCount) 1 }}
{{- fail (printf "%s.assignment %q pins partitions to every pod: replicaCount must be 1 (use \"group\" to scale)" $key $c.assignment) }}
{{- end }}
{{- end }}
{{- end }}
{{- if ge (int64 $v.kafka.heartbeatIntervalMs) (int64 $v.kafka.sessionTimeoutMs) }}
{{- fail "kafka.heartbeatIntervalMs must be below kafka.sessionTimeoutMs" }}
{{- end }}
{{- $topics := list $v.kafka.topics.taskEvents $v.kafka.topics.kpiWindows $v.kafka.topics.anomalies $v.kafka.topics.deadLetter $v.kafka.topics.lateEvents }}
{{- if ne (len (uniq $topics)) (len $topics) }}
{{- fail "kafka.topics: every topic name must be different" }}
{{- end }}
{{- if ne (mod 86400 (int64 $v.aggregator.windowSecs)) 0 }}
{{- fail (printf "aggregator.windowSecs (%d) must divide 86400" (int64 $v.aggregator.windowSecs)) }}
{{- end }}
{{- if gt (int64 $v.events.maxFutureSkewSecs) (int64 $v.aggregator.allowedLatenessSecs) }}
{{- fail (printf "events.maxFutureSkewSecs (%d) exceeds aggregator.allowedLatenessSecs (%d): an event accepted that far ahead of the clock would make events that complete now late on its partition" (int64 $v.events.maxFutureSkewSecs) (int64 $v.aggregator.allowedLatenessSecs)) }}
{{- end }}
{{- if and $v.authApi.jwt.secret $v.authApi.jwt.existingSecret }}
{{- fail "authApi.jwt: set secret or existingSecret, not both" }}
{{- end }}
{{- if and $v.alerter.existingSecret (or $v.alerter.webhooks $v.alerter.pagerduty.routingKey) }}
{{- fail "alerter: set webhooks / pagerduty.routingKey or existingSecret, not both" }}
{{- end }}
{{- if and (eq $v.scorer.models.source "configMap") (not $v.scorer.models.configMapName) }}
{{- fail "scorer.models.source is configMap: set scorer.models.configMapName" }}
{{- end }}
{{- if and (eq $v.scorer.models.source "persistentVolumeClaim") (not $v.scorer.models.claimName) }}
{{- fail "scorer.models.source is persistentVolumeClaim: set scorer.models.claimName" }}
{{- end }}
{{- range $key := list "ingest" "authApi" }}
{{- $a := (index $v $key).autoscaling }}
{{- if and $a.enabled (gt (int64 $a.minReplicas) (int64 $a.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas exceeds maxReplicas" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Environment shared by every container: the config file, logging, extra variables.
dict "root" $ "values" <component values or nil>
*/}}
{{- define "agentops.commonEnv" -}}
- name: RUST_LOG
  value: {{ .root.Values.log.level | quote }}
{{- if eq .root.Values.log.format "json" }}
- name: AGENTOPS_LOG_FORMAT
  value: json
{{- end }}
{{- end }}

{{/*
A Deployment of one service.
dict "root" $ "component" "ingest" "values" .Values.ingest "args" (list "ingest" "serve")
     "port" 8080 "portName" "http" "http" true|false
*/}}
{{- define "agentops.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $ctx := dict "root" $root "component" .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "agentops.componentName" $ctx }}
  labels:
    {{- include "agentops.componentLabels" $ctx | nindent 4 }}
spec:
  {{- if not (and $v.autoscaling $v.autoscaling.enabled) }}
  replicas: {{ int64 $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "agentops.componentSelectorLabels" $ctx | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      {{- if .http }}
      # Serve on: start the new pod before stopping an old one.
      maxSurge: 25%
      maxUnavailable: 0
      {{- else }}
      # A consumer group member: never run more pods than partitions, even while rolling.
      maxSurge: 0
      maxUnavailable: 1
      {{- end }}
  template:
    metadata:
      labels:
        {{- include "agentops.componentSelectorLabels" $ctx | nindent 8 }}
        {{- with $root.Values.commonLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "agentops.configToml" $root | sha256sum }}
        {{- if eq .component "auth-api" }}
        {{- if $root.Values.authApi.jwt.secret }}
        checksum/jwt-secret: {{ $root.Values.authApi.jwt.secret | sha256sum }}
        {{- end }}
        {{- end }}
        {{- if and (eq .component "alerter") (not $root.Values.alerter.existingSecret) (or $root.Values.alerter.webhooks $root.Values.alerter.pagerduty.routingKey) }}
        checksum/alerter-secret: {{ printf "%s|%s" (include "agentops.alerterWebhooksToml" $root) $root.Values.alerter.pagerduty.routingKey | sha256sum }}
        {{- end }}
        {{- if $root.Values.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .port | toString | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "agentops.serviceAccountName" $root }}
      # The services never call the Kubernetes API.
      automountServiceAccountToken: false
      # No <SERVICE>_PORT variables: the settings loader reads every AGENTOPS__* variable and
      # rejects unknown keys.
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ int64 $v.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .component }}
          image: {{ include "agentops.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            - name: AGENTOPS_CONFIG
              value: /etc/agentops/config.toml
            {{- include "agentops.commonEnv" (dict "root" $root) | nindent 12 }}
            {{- if eq .component "auth-api" }}
            - name: AGENTOPS__AUTH_API__JWT_SECRET
              valueFrom:
                secretKeyRef:
                  name: {{ include "agentops.jwtSecretName" $root }}
                  key: {{ include "agentops.jwtSecretKey" $root }}
            {{- end }}
            {{- if eq .component "alerter" }}
            {{- $a := $root.Values.alerter }}
            {{- if or $a.existingSecret $a.webhooks }}
            - name: AGENTOPS__ALERTER__WEBHOOKS
              valueFrom:
                secretKeyRef:
                  name: {{ include "agentops.alerterSecretName" $root }}
                  key: webhooks
                  {{- if $a.existingSecret }}
                  optional: true
                  {{- end }}
            {{- end }}
            {{- if or $a.existingSecret $a.pagerduty.routingKey }}
            - name: AGENTOPS__ALERTER__PAGERDUTY__ROUTING_KEY
              valueFrom:
                secretKeyRef:
                  name: {{ include "agentops.alerterSecretName" $root }}
                  key: pagerduty-routing-key
                  {{- if $a.existingSecret }}
                  optional: true
                  {{- end }}
            {{- end }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: {{ .portName }}
              containerPort: {{ int64 .port }}
              protocol: TCP
          startupProbe:
            httpGet:
              path: /healthz
              port: {{ .portName }}
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: /healthz
              port: {{ .portName }}
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: {{ .portName }}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 3
          {{- if .http }}
          {{- if gt (int64 $v.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ int64 $v.preStopSleepSeconds | toString | quote }}]
          {{- end }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/agentops
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- if and (eq .component "scorer") (ne $root.Values.scorer.models.source "image") }}
            - name: models
              mountPath: {{ include "agentops.modelDir" $root }}
              readOnly: true
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "agentops.fullname" $root }}-config
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if eq .component "scorer" }}
        {{- if eq $root.Values.scorer.models.source "configMap" }}
        - name: models
          configMap:
            name: {{ $root.Values.scorer.models.configMapName }}
        {{- else if eq $root.Values.scorer.models.source "persistentVolumeClaim" }}
        - name: models
          persistentVolumeClaim:
            claimName: {{ $root.Values.scorer.models.claimName }}
            readOnly: true
        {{- end }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/*
A hook Job running one command of the image with the chart's config.toml. Hooks run before
the release's ConfigMap exists (pre-install), so the config travels in the Job itself
(AGENTOPS_CONFIG_TOML, written to /tmp/config.toml by the shell).
dict "root" $ "component" "migrate" "values" .Values.migrations "command" "auth-api migrate"
     "weight" "-5"
*/}}
{{- define "agentops.hookJob" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $ctx := dict "root" $root "component" .component -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "agentops.componentName" $ctx }}
  labels:
    {{- include "agentops.componentLabels" $ctx | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: {{ .weight | quote }}
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ int64 $v.backoffLimit }}
  activeDeadlineSeconds: {{ int64 $v.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "agentops.componentSelectorLabels" $ctx | nindent 8 }}
        {{- with $root.Values.commonLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $root.Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      restartPolicy: Never
      {{- /* The chart's ServiceAccount is not there yet before install. */}}
      {{- if not $root.Values.serviceAccount.create }}
      serviceAccountName: {{ include "agentops.serviceAccountName" $root }}
      {{- end }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "agentops.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            - /bin/sh
            - -c
            - {{ printf "printf '%%s' \"$AGENTOPS_CONFIG_TOML\" > /tmp/config.toml && exec %s" .command | toRawJson }}
          env:
            - name: AGENTOPS_CONFIG
              value: /tmp/config.toml
            - name: AGENTOPS_CONFIG_TOML
              value: {{ include "agentops.configToml" $root | toRawJson }}
            {{- include "agentops.commonEnv" (dict "root" $root) | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 16Mi
{{- end }}

{{/*
A HorizontalPodAutoscaler on CPU (and optionally memory).
dict "root" $ "component" "ingest" "values" .Values.ingest
*/}}
{{- define "agentops.hpa" -}}
{{- $ctx := dict "root" .root "component" .component -}}
{{- $a := .values.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "agentops.componentName" $ctx }}
  labels:
    {{- include "agentops.componentLabels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "agentops.componentName" $ctx }}
  minReplicas: {{ int64 $a.minReplicas }}
  maxReplicas: {{ int64 $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ int64 $a.targetCPUUtilizationPercentage }}
    {{- if $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ int64 $a.targetMemoryUtilizationPercentage }}
    {{- end }}
{{- end }}

{{/*
A PodDisruptionBudget. dict "root" $ "component" "ingest" "values" .Values.ingest
*/}}
{{- define "agentops.pdb" -}}
{{- $ctx := dict "root" .root "component" .component -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "agentops.componentName" $ctx }}
  labels:
    {{- include "agentops.componentLabels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "agentops.componentSelectorLabels" $ctx | nindent 6 }}
{{- end }}

{{/*
A Service. dict "root" $ "component" "ingest" "port" 8080 "targetPort" "http" "portName" "http"
     "service" .Values.ingest.service (or nil: a headless metrics Service)
*/}}
{{- define "agentops.service" -}}
{{- $ctx := dict "root" .root "component" .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .name | default (include "agentops.componentName" $ctx) }}
  labels:
    {{- include "agentops.componentLabels" $ctx | nindent 4 }}
  {{- if .service }}
  {{- with .service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
spec:
  {{- if .service }}
  type: {{ .service.type }}
  {{- else }}
  clusterIP: None
  {{- end }}
  selector:
    {{- include "agentops.componentSelectorLabels" $ctx | nindent 4 }}
  ports:
    - name: {{ .portName }}
      port: {{ int64 .port }}
      targetPort: {{ .portName }}
      protocol: TCP
{{- end }}

{{/* A number as a TOML float (`10` -> `10.0`), for settings of type f64. */}}
{{- define "agentops.tomlFloat" -}}
{{- $s := toString . -}}
{{- if or (contains "." $s) (contains "e" $s) -}}{{ $s }}{{- else -}}{{ $s }}.0{{- end -}}
{{- end -}}
