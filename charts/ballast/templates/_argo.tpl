{{/*
Argo Rollouts mode (rollout.mode: argo). One Rollout "<fullname>-app" runs the ui and the api in
the same pod, so a preview ui can only ever talk to its own release's api (127.0.0.1). Argo
Rollouts manages exactly one active and one preview Service per Rollout (argoproj/argo-rollouts
issue 451), so the pair it switches, <fullname>-ui and <fullname>-ui-preview, carries both ports:
"http" (the ui; the Ingress's) and "api". Container ports are named ui-http, ui-metrics, api-http,
api-metrics: port names are unique within a pod.
*/}}

{{- define "ballast.argo.enabled" -}}
{{- if eq .Values.rollout.mode "argo" }}true{{ end }}
{{- end }}

{{/* Refuse colour-mode settings and what cannot share one pod; checked once per render (the Rollout). */}}
{{- define "ballast.argo.validate" -}}
{{- if not (and .Values.ui.enabled .Values.api.enabled) }}
{{- fail "rollout.mode argo runs the ui and the api in one pod: ui.enabled and api.enabled must both be true" }}
{{- end }}
{{- range $color := list "blue" "green" }}
{{- $c := index $.Values.colors $color }}
{{- if or (and (eq $color "green") $c.enabled) $c.tag $c.contract }}
{{- fail (printf "colors.%s is a rollout.mode colors setting; rollout.mode argo has no colours and runs image.tag: reset colors.%s (enabled only for blue, tag \"\", contract false)" $color $color) }}
{{- end }}
{{- end }}
{{- $ports := list (int .Values.ui.port) (int .Values.ui.metricsPort) (int .Values.api.port) (int .Values.api.metricsPort) }}
{{- if ne (len ($ports | uniq)) 4 }}
{{- fail (printf "rollout.mode argo runs the ui and the api in one pod: ui.port, ui.metricsPort, api.port and api.metricsPort must all differ (%v)" $ports) }}
{{- end }}
{{- end }}

{{/* The app pods' own labels: (dict "root" $) */}}
{{- define "ballast.argo.selector" -}}
{{ include "ballast.componentSelector" (dict "root" .root "component" "app") }}
{{- end }}

{{/*
One container of the app pod: (dict "root" $ "component" "api"|"ui" "image" IMAGE "secret" NAME).
The colour Deployments' containers, with the pod-unique port names and, for the ui, the api
of its own pod and volumes of its own (ui-tmp, ui-data).
*/}}
{{- define "ballast.argo.container" -}}
{{- $root := .root }}
{{- $c := .component }}
{{- $v := index $root.Values $c }}
{{- $ui := eq $c "ui" }}
{{- $health := ternary "/_stcore/health" "/healthz" $ui -}}
- name: {{ $c }}
  image: {{ .image }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command: ["python", "-m", "ballast_{{ $c }}"]
  ports:
    - name: {{ $c }}-http
      containerPort: {{ $v.port }}
      protocol: TCP
    - name: {{ $c }}-metrics
      containerPort: {{ $v.metricsPort }}
      protocol: TCP
  envFrom:
    - configMapRef:
        name: {{ include "ballast.fullname" $root }}-config
  env:
    - name: BALLAST_{{ upper $c }}__HOST
      value: "0.0.0.0"
    - name: BALLAST_{{ upper $c }}__PORT
      value: {{ $v.port | quote }}
    - name: BALLAST_{{ upper $c }}__METRICS_PORT
      value: {{ $v.metricsPort | quote }}
    {{- if $ui }}
    # The api of this pod: the same release, always (a preview ui never calls the live api).
    - name: BALLAST_API_URL
      value: {{ printf "http://127.0.0.1:%v" $root.Values.api.port | quote }}
    {{- include "ballast.secretEnv" (dict "root" $root "secret" .secret "database" false "redis" true) | nindent 4 }}
    {{- else }}
    - name: BALLAST_API__WORKERS
      value: {{ $v.workers | quote }}
    {{- include "ballast.secretEnv" (dict "root" $root "secret" .secret "database" true "redis" true "broker" true "s3" true "api" true) | nindent 4 }}
    {{- end }}
    {{- include "ballast.otelEnv" (dict "root" $root "component" $c "color" "") | nindent 4 }}
    {{- range $name, $value := $v.env }}
    - name: {{ $name }}
      value: {{ $value | quote }}
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  startupProbe:
    httpGet:
      path: {{ $health }}
      port: {{ $c }}-http
    periodSeconds: {{ $v.probes.startupPeriodSeconds }}
    failureThreshold: {{ $v.probes.startupFailureThreshold }}
    timeoutSeconds: {{ $v.probes.timeoutSeconds }}
  livenessProbe:
    httpGet:
      path: {{ $health }}
      port: {{ $c }}-http
    periodSeconds: {{ $v.probes.periodSeconds }}
    timeoutSeconds: {{ $v.probes.timeoutSeconds }}
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: {{ ternary "/_stcore/health" "/readyz" $ui }}
      port: {{ $c }}-http
    periodSeconds: {{ $v.probes.periodSeconds }}
    timeoutSeconds: {{ $v.probes.timeoutSeconds }}
    failureThreshold: 2
  lifecycle:
    # Keep serving while the endpoint removal propagates to kube-proxy and the ingress.
    preStop:
      exec:
        command: ["sleep", "5"]
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  securityContext:
    {{- include "ballast.containerSecurityContext" $root | nindent 4 }}
  volumeMounts:
    {{- if $ui }}
    - name: ui-tmp
      mountPath: /tmp
    - name: ui-data
      mountPath: /var/lib/ballast
    {{- else }}
    {{- include "ballast.volumeMounts" $root | nindent 4 }}
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* Replica count of the app pods: the larger of ui.replicas and api.replicas. */}}
{{- define "ballast.argo.replicas" -}}
{{- max (int .Values.ui.replicas) (int .Values.api.replicas) }}
{{- end }}

{{/* Whether the app pods are autoscaled (either component's autoscaling.enabled). */}}
{{- define "ballast.argo.autoscaled" -}}
{{- if or .Values.ui.autoscaling.enabled .Values.api.autoscaling.enabled }}true{{ end }}
{{- end }}

{{/*
NetworkPolicy of the app pods (rollout.mode argo): the union of the ui's and the api's, since
both containers share the pod's network identity. ui -> api is loopback and needs no rule.
*/}}
{{- define "ballast.np.app" -}}
{{- $np := .Values.networkPolicy }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "ballast.fullname" . }}-app
  labels:
    {{- include "ballast.componentLabels" (dict "root" . "component" "app") | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "ballast.argo.selector" (dict "root" .) | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              {{- toYaml $np.ingressControllerNamespaceLabels | nindent 14 }}
      ports:
        - protocol: TCP
          port: {{ .Values.ui.port }}
    {{- $callers := list }}
    {{- if .Values.tests.enabled }}{{ $callers = append $callers "test" }}{{ end }}
    {{- if .Values.rollout.argo.analysis.enabled }}{{ $callers = append $callers "smoke-test" }}{{ end }}
    {{- if $callers }}
    - from:
        {{- range $c := $callers }}
        - {{- include "ballast.np.pods" (dict "root" $ "component" $c) | nindent 10 }}
        {{- end }}
      ports:
        - protocol: TCP
          port: {{ .Values.ui.port }}
        - protocol: TCP
          port: {{ .Values.api.port }}
    {{- end }}
    {{- include "ballast.np.scrape" (dict "np" $np "port" .Values.ui.metricsPort) | nindent 4 }}
    {{- include "ballast.np.scrape" (dict "np" $np "port" .Values.api.metricsPort) | nindent 4 }}
  egress:
    {{- include "ballast.np.server" (dict "root" . "what" "databasePeers" "port" .Values.database.port) | nindent 4 }}
    {{- include "ballast.np.server" (dict "root" . "what" "redisPeers" "port" .Values.redis.port) | nindent 4 }}
    {{- include "ballast.np.server" (dict "root" . "what" "s3Peers" "port" .Values.s3.port) | nindent 4 }}
    {{- if .Values.config.auth.oidc.enabled }}
    {{- include "ballast.np.external" (dict "peers" .Values.config.auth.oidc.peers "port" 443) | nindent 4 }}
    {{- end }}
{{- end }}

{{/* Egress to the app pods' ui and api ports (helm test, the smoke-test Job). */}}
{{- define "ballast.np.toApp" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "ballast.argo.selector" (dict "root" .) | nindent 10 }}
  ports:
    - protocol: TCP
      port: {{ .Values.ui.port }}
    - protocol: TCP
      port: {{ .Values.api.port }}
{{- end }}
