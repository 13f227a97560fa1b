{{/*
The Services of a blue-green component: (dict "root" $ "component" "api" "port" 8000)
  <fullname>-<component>          selects activeColor  (what clients and the Ingress use)
  <fullname>-<component>-preview  selects the idle colour (smoke tests before promotion)
  <fullname>-<component>-<color>  one per enabled colour (stable per-release address; metrics)
Only the first two depend on activeColor, and only in their selectors.
*/}}
{{- define "ballast.services" -}}
{{- $root := .root }}
{{- include "ballast.validateColors" $root }}
{{- $component := .component }}
{{- $port := .port }}
{{- $metricsPort := .metricsPort }}
{{- if and $metricsPort (eq (int $port) (int $metricsPort)) }}
{{- fail (printf "%s.metricsPort must differ from %s.port (%v): the Ingress must never route /metrics" $component $component $port) }}
{{- end }}
{{- $targets := list (list "" "active" $root.Values.activeColor) (list "-preview" "preview" (include "ballast.previewColor" $root)) }}
{{- range $color := list "blue" "green" }}
{{- if (index $root.Values.colors $color).enabled }}
{{- $targets = append $targets (list (printf "-%s" $color) "color" $color) }}
{{- end }}
{{- end }}
{{- range $t := $targets }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "ballast.fullname" $root }}-{{ $component }}{{ index $t 0 }}
  labels:
    {{- include "ballast.componentLabels" (dict "root" $root "component" $component) | nindent 4 }}
    ballast.io/service-role: {{ index $t 1 }}
    {{- if eq (index $t 1) "color" }}
    ballast.io/color: {{ index $t 2 }}
    {{- end }}
spec:
  type: ClusterIP
  ports:
    - name: http
      port: {{ $port }}
      targetPort: http
      protocol: TCP
    {{- if and $metricsPort (eq (index $t 1) "color") }}
    # Scraped by the ServiceMonitor; never on the Services the Ingress or clients use.
    - name: metrics
      port: {{ $metricsPort }}
      targetPort: metrics
      protocol: TCP
    {{- end }}
  selector:
    {{- include "ballast.componentSelector" (dict "root" $root "component" $component) | nindent 4 }}
    ballast.io/color: {{ index $t 2 }}
{{- end }}
{{- end }}

{{/* Prometheus scrape annotations of a pod (metrics.scrapeAnnotations): (dict "root" $ "port" 9103) */}}
{{- define "ballast.scrapeAnnotations" -}}
{{- if .root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* ServiceAccount of a component: (dict "root" $ "component" "api" "hook" false) */}}
{{- define "ballast.serviceAccount" -}}
{{- $sa := (index .root.Values .component).serviceAccount }}
{{- if $sa.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "ballast.serviceAccountName" . }}
  labels:
    {{- include "ballast.componentLabels" . | nindent 4 }}
  {{- if or $sa.annotations .hook .wave }}
  annotations:
    {{- with $sa.annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- if .hook }}
    {{- include "ballast.hookAnnotations" (dict "weight" "-10") | nindent 4 }}
    {{- end }}
    {{- with .wave }}
    argocd.argoproj.io/sync-wave: {{ . | quote }}
    {{- end }}
  {{- end }}
automountServiceAccountToken: {{ $sa.automountToken }}
{{- end }}
{{- end }}

{{/* Helm hook annotations for the migration Job and what it needs first: (dict "weight" "0") */}}
{{- define "ballast.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/* PDB and HPA of each enabled colour of a component: (dict "root" $ "component" "api") */}}
{{- define "ballast.pdbAndHpa" -}}
{{- $root := .root }}
{{- $component := .component }}
{{- $v := index $root.Values $component }}
{{- if $v.enabled }}
{{- range $color := list "blue" "green" }}
{{- if (index $root.Values.colors $color).enabled }}
{{- if $v.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "ballast.fullname" $root }}-{{ $component }}-{{ $color }}
  labels:
    {{- include "ballast.componentLabels" (dict "root" $root "component" $component) | nindent 4 }}
    ballast.io/color: {{ $color }}
spec:
  maxUnavailable: {{ $v.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "ballast.componentSelector" (dict "root" $root "component" $component) | nindent 6 }}
      ballast.io/color: {{ $color }}
{{- end }}
{{- if $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "ballast.fullname" $root }}-{{ $component }}-{{ $color }}
  labels:
    {{- include "ballast.componentLabels" (dict "root" $root "component" $component) | nindent 4 }}
    ballast.io/color: {{ $color }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "ballast.fullname" $root }}-{{ $component }}-{{ $color }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* NetworkPolicy building blocks. */}}
{{- define "ballast.np.pods" -}}
podSelector:
  matchLabels:
    {{- include "ballast.componentSelector" . | nindent 4 }}
{{- end }}
{{/* (dict "peers" LIST "port" N): TCP to PORT at the peers ([] means anywhere). */}}
{{- define "ballast.np.external" -}}
- ports:
    - protocol: TCP
      port: {{ .port }}
  {{- with .peers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{/* (dict "np" .Values.networkPolicy "port" N): Prometheus's namespace may scrape PORT. */}}
{{- define "ballast.np.scrape" -}}
- from:
    - namespaceSelector:
        matchLabels:
          {{- toYaml .np.prometheusNamespaceLabels | nindent 10 }}
  ports:
    - protocol: TCP
      port: {{ .port }}
{{- end }}
{{/* DNS queries, to cluster DNS only (networkPolicy.dnsPeers: kube-dns in kube-system). */}}
{{- define "ballast.np.dns" -}}
{{- if not .Values.networkPolicy.dnsPeers }}
{{- fail "networkPolicy.dnsPeers is empty: name where cluster DNS runs (default: namespace kube-system, pods k8s-app=kube-dns), or DNS egress would be open to any address" }}
{{- end }}
- ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
  to:
    {{- toYaml .Values.networkPolicy.dnsPeers | nindent 4 }}
{{- end }}

{{/*
Egress to a server outside the release: (dict "root" $ "what" "databasePeers" "port" N). Its peers,
or anywhere on that port while none are given -- refused when config.env is prod, where the
NetworkPolicies must name where PostgreSQL, Redis and the object store live. No object-store
rule without s3.endpointUrl (the api then keeps objects in its data directory).
*/}}
{{- define "ballast.np.server" -}}
{{- $peers := index .root.Values.networkPolicy .what }}
{{- if or (ne .what "s3Peers") .root.Values.s3.endpointUrl }}
{{- if and (not $peers) (eq .root.Values.config.env "prod") }}
{{- fail (printf "networkPolicy.%s is empty with config.env=prod: name where the server lives (namespaceSelector/podSelector or ipBlock), or egress on port %v is open to any address" .what .port) }}
{{- end }}
{{- include "ballast.np.external" (dict "peers" $peers "port" .port) }}
{{- end }}
{{- end }}

{{/*
Pod-spec extras of a component: (dict "root" $ "component" "api" "color" "blue"); color may be "".
priorityClassName and topologySpreadConstraints (an entry without labelSelector gets the pods' own).
*/}}
{{- define "ballast.podExtras" -}}
{{- $v := index .root.Values .component }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- if $v.topologySpreadConstraints }}
{{- $own := include "ballast.componentSelector" . | fromYaml }}
{{- with .color }}
{{- $_ := set $own "ballast.io/color" . }}
{{- end }}
{{- $constraints := list }}
{{- range $c := $v.topologySpreadConstraints }}
{{- $c = deepCopy $c }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $own) }}
{{- end }}
{{- $constraints = append $constraints $c }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- end }}
