{{/*
OpenTelemetry tracing env of one component: (dict "root" $ "component" "api" "color" "blue");
color may be "". Nothing when otel.endpoint is empty: the processes then trace nothing.
The SDK reads these standard variables itself.
Ref: https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/
*/}}
{{- define "ballast.otelEnv" -}}
{{- $o := .root.Values.otel -}}
{{- if $o.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $o.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: "http/protobuf"
- name: OTEL_SERVICE_NAME
  value: {{ printf "%s-%s" $o.serviceNamePrefix .component | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $o.sampler | quote }}
{{- if hasSuffix "traceidratio" $o.sampler }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $o.samplerArg | toString | quote }}
{{- end }}
{{- $attrs := dict "service.version" (include "ballast.releaseTag" .root) "deployment.environment.name" .root.Values.config.env }}
{{- with .color }}
{{- $_ := set $attrs "ballast.color" . }}
{{- end }}
{{- $attrs = mergeOverwrite $attrs $o.resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "ballast.otelAttributes" $attrs | quote }}
{{- end }}
{{- end }}

{{- define "ballast.otelAttributes" -}}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s=%v" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
