{{/* Name of the chart, for labels. */}}
{{- define "netpol-trace.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of every object of a release: the release name, unless it already says netpol-trace. */}}
{{- define "netpol-trace.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels selecting the agent pods. */}}
{{- define "netpol-trace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netpol-trace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{/* Labels selecting the controller pods. */}}
{{- define "netpol-trace.controllerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "netpol-trace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* Labels every object shares. */}}
{{- define "netpol-trace.commonLabels" -}}
app.kubernetes.io/part-of: netpol-trace
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of the agent's objects (and of the objects shared by agent and controller). */}}
{{- define "netpol-trace.labels" -}}
{{ include "netpol-trace.selectorLabels" . }}
{{ include "netpol-trace.commonLabels" . }}
{{- end -}}

{{/* Labels of the controller's objects. */}}
{{- define "netpol-trace.controllerLabels" -}}
{{ include "netpol-trace.controllerSelectorLabels" . }}
{{ include "netpol-trace.commonLabels" . }}
{{- end -}}

{{/* Name of the controller's objects. */}}
{{- define "netpol-trace.controllerName" -}}
{{- printf "%s-controller" (include "netpol-trace.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The agent image. */}}
{{- define "netpol-trace.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Name of the identity Prometheus scrapes the agents with. */}}
{{- define "netpol-trace.scraperName" -}}
{{- printf "%s-scraper" (include "netpol-trace.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
