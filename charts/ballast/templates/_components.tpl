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
  selector:
    {{- include "ballast.componentSelector" (dict "root" $root "component" $component) | nindent 4 }}
    ballast.io/color: {{ index $t 2 }}
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
{{- define "ballast.np.dns" -}}
- ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
