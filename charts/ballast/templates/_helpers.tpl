{{/* Names, after `helm create`: truncated to 63 characters (DNS label limit). */}}
{{- define "ballast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ballast.fullname" -}}
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

{{- define "ballast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: only immutable ones (name, instance); components add component/colour. */}}
{{- define "ballast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ballast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ballast.labels" -}}
helm.sh/chart: {{ include "ballast.chart" . }}
{{ include "ballast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ballast
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "api") */}}
{{- define "ballast.componentLabels" -}}
{{ include "ballast.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ballast.componentSelector" -}}
{{ include "ballast.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The colour that is not active. */}}
{{- define "ballast.previewColor" -}}
{{- if eq .Values.activeColor "blue" }}green{{ else }}blue{{ end }}
{{- end }}

{{/* Tag of the newest release (migrations, and colours without their own tag). */}}
{{- define "ballast.releaseTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
Image of a component in a colour: (dict "root" $ "component" "api" "color" "blue"); color may be "".
"image" names the Dockerfile target when it differs from the component (worker: jobs).
"tag" pins a workload outside the colours to a release (worker.tag, backup.exporter.tag: the
live colour's, set by ballast deploy stage); "" follows image.tag.
*/}}
{{- define "ballast.image" -}}
{{- $root := .root }}
{{- $values := index $root.Values .component }}
{{- $repo := default (printf "%s-%s" $root.Values.image.repository (default .component .image)) $values.imageRepository }}
{{- $tag := include "ballast.releaseTag" $root }}
{{- if .color }}
{{- $tag = default $tag (index $root.Values.colors .color).tag }}
{{- end }}
{{- $tag = default $tag .tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{- define "ballast.secretName" -}}
{{- default (printf "%s-secrets" (include "ballast.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "ballast.serviceAccountName" -}}
{{- $values := index .root.Values .component }}
{{- if $values.serviceAccount.create }}
{{- default (printf "%s-%s" (include "ballast.fullname" .root) .component) $values.serviceAccount.name }}
{{- else }}
{{- default "default" $values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Internal URL of one colour's api: each colour's ui talks to the api of its own release. */}}
{{- define "ballast.apiColorUrl" -}}
{{- printf "http://%s-api-%s:%v" (include "ballast.fullname" .root) .color .root.Values.api.port }}
{{- end }}

{{/*
The password guard: secrets live in the existing Secret, never in values (values end up in the
release's history, in Git and in `kubectl get -o yaml` of ConfigMaps and pod specs).
"ballast.passwordInValue": (dict "what" "database.url" "value" V "hint" "...") fails when V carries
a password: user:password@ in a URL, or a password=/pass=/pwd= query parameter.
"ballast.secretLiteral": (dict "what" "api.env" "name" N "value" V) also fails on a secret-looking
variable name with a literal value.
*/}}
{{- define "ballast.passwordInValue" -}}
{{- $v := toString .value }}
{{- if or (regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://[^/@?#]*:[^/@?#]*@" $v) (regexMatch "(?i)[?&](password|passwd|pass|pwd)=" $v) }}
{{- fail (printf "%s must not contain a password (user:password@ or ?password= in a URL): %s" .what .hint) }}
{{- end }}
{{- end }}

{{- define "ballast.secretLiteral" -}}
{{- if regexMatch "(?i)(^|_)(PASSWORD|PASSWD|PASS|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIALS?)$" .name }}
{{- fail (printf "%s: %s looks like a secret and must not be a literal value: put it in the existing Secret and reference it with extraEnv valueFrom.secretKeyRef" .what .name) }}
{{- end }}
{{- include "ballast.passwordInValue" (dict "what" (printf "%s: %s" .what .name) "value" .value "hint" "put it in the existing Secret and reference it with extraEnv valueFrom.secretKeyRef") }}
{{- end }}

{{/* Every literal env value of the components' env maps and extraEnv lists passes the password guard. */}}
{{- define "ballast.validateEnvLiterals" -}}
{{- range $component := list "api" "ui" "worker" "backup" }}
{{- $v := index $.Values $component }}
{{- range $name, $value := $v.env }}
{{- include "ballast.secretLiteral" (dict "what" (printf "%s.env" $component) "name" $name "value" $value) }}
{{- end }}
{{- range $e := $v.extraEnv }}
{{- if hasKey $e "value" }}
{{- include "ballast.secretLiteral" (dict "what" (printf "%s.extraEnv" $component) "name" $e.name "value" $e.value) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Non-secret settings shared by every process, as a name -> value map (YAML): the chart's own and config.extra. */}}
{{- define "ballast.configData" -}}
{{- $base := include "ballast.configBase" . }}
{{- $names := $base | fromYaml }}
{{- include "ballast.validateEnvLiterals" . }}
{{- $base }}
{{- range $k, $v := .Values.config.extra }}
{{- if hasKey $names $k }}
{{- fail (printf "config.extra.%s is set by the chart itself (from its own value): set that value instead" $k) }}
{{- end }}
{{- include "ballast.secretLiteral" (dict "what" "config.extra" "name" $k "value" $v) }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end }}

{{- define "ballast.configBase" -}}
{{- include "ballast.passwordInValue" (dict "what" "database.url" "value" .Values.database.url "hint" "put it in the existing Secret (secrets.databasePasswordKey)") }}
{{- include "ballast.passwordInValue" (dict "what" "redis.url" "value" .Values.redis.url "hint" "put the full URL in the existing Secret (secrets.redisUrlKey)") }}
{{- include "ballast.passwordInValue" (dict "what" "s3.endpointUrl" "value" .Values.s3.endpointUrl "hint" "the secret access key belongs in the existing Secret (secrets.s3SecretAccessKeyKey)") }}
{{- include "ballast.passwordInValue" (dict "what" "otel.endpoint" "value" .Values.otel.endpoint "hint" "give the collector's address only") }}
BALLAST_ENV: {{ .Values.config.env | quote }}
BALLAST_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
BALLAST_LOG_FORMAT: {{ .Values.config.logFormat | quote }}
BALLAST_DATABASE__URL: {{ .Values.database.url | quote }}
BALLAST_DATABASE__POOL_SIZE: {{ .Values.database.poolSize | quote }}
BALLAST_DATABASE__MAX_OVERFLOW: {{ .Values.database.maxOverflow | quote }}
BALLAST_DATABASE__POOL_TIMEOUT: {{ .Values.database.poolTimeoutSeconds | quote }}
BALLAST_PATHS__DATA_DIR: "/var/lib/ballast"
BALLAST_DATASETS__MAX_UPLOAD_MB: {{ .Values.config.maxUploadMB | quote }}
{{- if and .Values.worker.enabled (not .Values.redis.url) }}
{{- fail "worker.enabled needs redis.url: the api and the workers share Redis as the Celery broker" }}
{{- end }}
{{- with .Values.redis.url }}
BALLAST_REDIS_URL: {{ . | quote }}
BALLAST_JOBS__BROKER_URL: {{ . | quote }}
{{- end }}
BALLAST_JOBS__SOFT_TIME_LIMIT: {{ .Values.worker.softTimeLimitSeconds | quote }}
BALLAST_JOBS__CANCEL_GRACE_S: {{ .Values.worker.cancelGraceSeconds | quote }}
{{- with .Values.s3.endpointUrl }}
BALLAST_S3__ENDPOINT_URL: {{ . | quote }}
BALLAST_S3__BUCKET: {{ $.Values.s3.bucket | quote }}
BALLAST_S3__REGION: {{ $.Values.s3.region | quote }}
{{- with $.Values.s3.accessKeyId }}
BALLAST_S3__ACCESS_KEY_ID: {{ . | quote }}
{{- end }}
{{- with $.Values.s3.publicUrl }}
BALLAST_S3__PUBLIC_URL: {{ . | quote }}
{{- end }}
{{- $origins := $.Values.s3.corsOrigins }}
{{- if and (not $origins) $.Values.ingress.enabled }}
{{- range (prepend $.Values.ingress.extraHosts $.Values.ingress.host | uniq) }}
{{- $origins = append $origins (printf "https://%s" .) }}
{{- end }}
{{- end }}
{{- with $origins }}
BALLAST_S3__CORS_ORIGINS: {{ toJson . | quote }}
{{- end }}
{{- end }}
{{- with .Values.config.trustedProxies }}
BALLAST_SECURITY__TRUSTED_PROXIES: {{ toJson . | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.config.apiDocs) }}
BALLAST_SECURITY__API_DOCS: {{ .Values.config.apiDocs | quote }}
{{- end }}
{{- with .Values.config.auth }}
{{- range $mode := list "oidc" "proxy" }}
{{- $m := index $.Values.config.auth $mode }}
{{- range $role := append (values $m.groupRoles) ($m.defaultRole | default "viewer") }}
{{- if not (has $role (list "viewer" "editor" "admin")) }}
{{- fail (printf "config.auth.%s: groupRoles and defaultRole name viewer, editor or admin, not %q" $mode (toString $role)) }}
{{- end }}
{{- end }}
{{- end }}
BALLAST_AUTH__LOCAL_ACCOUNTS: {{ .localAccounts | quote }}
{{- if .oidc.enabled }}
{{- if not (and .oidc.issuer .oidc.clientId .oidc.redirectUri) }}
{{- fail "config.auth.oidc.enabled needs issuer, clientId and redirectUri" }}
{{- end }}
BALLAST_AUTH__OIDC__ENABLED: "true"
BALLAST_AUTH__OIDC__ISSUER: {{ .oidc.issuer | quote }}
BALLAST_AUTH__OIDC__CLIENT_ID: {{ .oidc.clientId | quote }}
BALLAST_AUTH__OIDC__REDIRECT_URI: {{ .oidc.redirectUri | quote }}
BALLAST_AUTH__OIDC__SCOPES: {{ toJson .oidc.scopes | quote }}
BALLAST_AUTH__OIDC__ROLE_CLAIM: {{ .oidc.roleClaim | quote }}
BALLAST_AUTH__OIDC__GROUP_ROLES: {{ toJson .oidc.groupRoles | quote }}
BALLAST_AUTH__OIDC__DISPLAY_NAME: {{ .oidc.displayName | quote }}
{{- with .oidc.defaultRole }}
BALLAST_AUTH__OIDC__DEFAULT_ROLE: {{ . | quote }}
{{- end }}
{{- end }}
{{- if .proxy.enabled }}
{{- if not $.Values.config.trustedProxies }}
{{- fail "config.auth.proxy.enabled needs config.trustedProxies: the sign-in headers are believed only from those peers" }}
{{- end }}
BALLAST_AUTH__PROXY__ENABLED: "true"
BALLAST_AUTH__PROXY__USER_HEADER: {{ .proxy.userHeader | quote }}
BALLAST_AUTH__PROXY__EMAIL_HEADER: {{ .proxy.emailHeader | quote }}
BALLAST_AUTH__PROXY__GROUPS_HEADER: {{ .proxy.groupsHeader | quote }}
BALLAST_AUTH__PROXY__GROUP_ROLES: {{ toJson .proxy.groupRoles | quote }}
{{- with .proxy.defaultRole }}
BALLAST_AUTH__PROXY__DEFAULT_ROLE: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Secret env entries: (dict "root" $ "secret" NAME "database" B "redis" B "broker" B "s3" B "s3Required" B).
Each process gets only the secrets it uses (README: "Which pod gets which secret"):
- every process: the secret key (session-token pepper in the api; the signing key of cache
  entries in the ui, api and workers; sealing of webhook secrets), which stage/prod demand;
- "database": the PostgreSQL password (api, workers, migrations, wait-for-migrations, backups);
- "redis" / "broker": a Redis URL with a password, optional in the Secret, as the cache's L2
  (ui, api, workers) / as the Celery broker (api, workers);
- "s3": the object store's secret key (api, workers, backups), optional in the Secret except
  for backups (s3Required). Without s3.accessKeyId there is none at all: the pods reach the
  object store with their own identity (IRSA / EKS Pod Identity through the ServiceAccount
  annotations; boto3's default credential chain, pgBackRest's web-id);
- "api": the OIDC client secret while config.auth.oidc.enabled.
*/}}
{{- define "ballast.secretEnv" -}}
{{- $s := .root.Values.secrets -}}
- name: BALLAST_SECURITY__SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $s.secretKeyKey }}
{{- if .database }}
- name: BALLAST_DATABASE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $s.databasePasswordKey }}
{{- end }}
{{- if and .s3 .root.Values.s3.accessKeyId }}
- name: BALLAST_S3__SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $s.s3SecretAccessKeyKey }}
      {{- if not .s3Required }}
      optional: true
      {{- end }}
{{- end }}
{{- if .redis }}
- name: BALLAST_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $s.redisUrlKey }}
      optional: true
{{- end }}
{{- if .broker }}
- name: BALLAST_JOBS__BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $s.redisUrlKey }}
      optional: true
{{- end }}
{{- if and .api .root.Values.config.auth.oidc.enabled }}
- name: BALLAST_AUTH__OIDC__CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $s.oidcClientSecretKey }}
      optional: true
{{- end }}
{{- end }}

{{/* Pod-level security context. */}}
{{- define "ballast.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context: read-only root, no privileges, no capabilities. */}}
{{- define "ballast.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Writable emptyDirs: HOME=/tmp and the data directory (the root filesystem is read-only). */}}
{{- define "ballast.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: data
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "ballast.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/ballast
{{- end }}

{{/* Soft anti-affinity across nodes unless the user gives affinity: (dict "root" $ "component" "api" "color" "blue") */}}
{{- define "ballast.affinity" -}}
{{- $values := index .root.Values .component }}
{{- if $values.affinity }}
{{- toYaml $values.affinity }}
{{- else }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "ballast.componentSelector" . | nindent 12 }}
            {{- with .color }}
            ballast.io/color: {{ . }}
            {{- end }}
{{- end }}
{{- end }}

{{/* The worker's termination grace period: past the hard time limit, so a warm shutdown lets every running task end. */}}
{{- define "ballast.workerGracePeriod" -}}
{{- $w := .Values.worker }}
{{- $hard := add $w.softTimeLimitSeconds $w.cancelGraceSeconds 30 }}
{{- if gt (int $w.terminationGracePeriodSeconds) 0 }}
{{- if le (int $w.terminationGracePeriodSeconds) (int $hard) }}
{{- fail (printf "worker.terminationGracePeriodSeconds (%v) must be longer than the hard time limit softTimeLimitSeconds + cancelGraceSeconds + 30 = %v, or running tasks are killed on every rollout" $w.terminationGracePeriodSeconds $hard) }}
{{- end }}
{{- $w.terminationGracePeriodSeconds }}
{{- else }}
{{- add $hard 60 }}
{{- end }}
{{- end }}

{{/* The wait-for-migrations init container: (dict "root" $ "image" IMAGE "secret" NAME) */}}
{{- define "ballast.waitForMigrations" -}}
- name: wait-for-migrations
  image: {{ .image }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["python", "-c", {{ .root.Files.Get "files/wait_for_migrations.py" | quote }}, {{ .root.Values.migrations.waitTimeoutSeconds | quote }}]
  envFrom:
    - configMapRef:
        name: {{ include "ballast.fullname" .root }}-config
  env:
    {{- include "ballast.secretEnv" (dict "root" .root "secret" .secret "database" true) | nindent 4 }}
  resources:
    {{- toYaml .root.Values.migrations.resources | nindent 4 }}
  securityContext:
    {{- include "ballast.containerSecurityContext" .root | nindent 4 }}
  volumeMounts:
    {{- include "ballast.volumeMounts" .root | nindent 4 }}
{{- end }}

{{/* envFrom + env of the backup containers: (dict "root" $ "secret" NAME). The S3 key is required. */}}
{{- define "ballast.backupEnv" -}}
{{- $b := .root.Values.backup -}}
envFrom:
  - configMapRef:
      name: {{ include "ballast.fullname" .root }}-config
env:
  - name: BALLAST_BACKUP__PREFIX
    value: {{ $b.prefix | quote }}
  - name: BALLAST_BACKUP__KEEP_HOURLY
    value: {{ $b.retention.keepHourly | quote }}
  - name: BALLAST_BACKUP__KEEP_DAILY
    value: {{ $b.retention.keepDaily | quote }}
  - name: BALLAST_BACKUP__KEEP_WEEKLY
    value: {{ $b.retention.keepWeekly | quote }}
  - name: BALLAST_BACKUP__RESTORE_JOBS
    value: {{ $b.restoreJobs | quote }}
  {{- include "ballast.secretEnv" (dict "root" .root "secret" .secret "database" true "s3" true "s3Required" true) | nindent 2 }}
  {{- range $name, $value := $b.env }}
  - name: {{ $name }}
    value: {{ $value | quote }}
  {{- end }}
  {{- with $b.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
Environment of the pgBackRest runs (`ballast backup pitr ...`): where the database pod's TLS
server is and the client certificate mounted from backup.pitr.tlsSecret.
*/}}
{{- define "ballast.pitrEnv" -}}
{{- $p := .Values.backup.pitr -}}
- name: BALLAST_BACKUP__PITR__STANZA
  value: {{ $p.stanza | quote }}
- name: BALLAST_BACKUP__PITR__PG_DATA
  value: {{ $p.pgDataPath | quote }}
- name: BALLAST_BACKUP__PITR__PG_PORT
  value: {{ $p.pgPort | quote }}
- name: BALLAST_BACKUP__PITR__PG_HOST
  value: {{ $p.pgHost | quote }}
- name: BALLAST_BACKUP__PITR__PG_HOST_PORT
  value: {{ $p.pgHostPort | quote }}
- name: BALLAST_BACKUP__PITR__PG_HOST_CERT_FILE
  value: /etc/ballast/pgbackrest-tls/tls.crt
- name: BALLAST_BACKUP__PITR__PG_HOST_KEY_FILE
  value: /etc/ballast/pgbackrest-tls/tls.key
- name: BALLAST_BACKUP__PITR__PG_HOST_CA_FILE
  value: /etc/ballast/pgbackrest-tls/ca.crt
- name: BALLAST_BACKUP__PITR__CONFIG_FILE
  value: /tmp/pgbackrest/pgbackrest.conf
- name: BALLAST_BACKUP__PITR__REPO_PATH
  value: {{ $p.repoPath | quote }}
- name: BALLAST_BACKUP__PITR__RETENTION_FULL
  value: {{ $p.retentionFull | quote }}
- name: BALLAST_BACKUP__PITR__VERIFY_TLS
  value: {{ $p.verifyTls | quote }}
{{- with $p.s3Endpoint }}
- name: BALLAST_BACKUP__PITR__S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Blue-green guards, checked once per render (included by the ui and api Services):
- the active colour must be deployed, or the Services would route to nothing;
- on an upgrade the active colour needs its own tag: an empty one follows image.tag, and
  bumping image.tag for the next release would replace the live colour in place.
*/}}
{{- define "ballast.validateColors" -}}
{{- $active := .Values.activeColor }}
{{- $color := index .Values.colors $active }}
{{- if not $color.enabled }}
{{- fail (printf "activeColor %s is not deployed: set colors.%s.enabled=true, or switch activeColor to the colour that runs" $active $active) }}
{{- end }}
{{- if and .Release.IsUpgrade (not $color.tag) }}
{{- fail (printf "colors.%s.tag is empty on an upgrade: the live colour would follow image.tag and be replaced in place. Set colors.%s.tag to the release it runs (ballast deploy stage does), then roll the idle colour out" $active $active) }}
{{- end }}
{{- end }}
