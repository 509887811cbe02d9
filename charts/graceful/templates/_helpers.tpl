{{/* Labels of every object: graceful's own, Helm's, and the user's. */}}
{{- define "graceful.labels" -}}
app.kubernetes.io/name: graceful
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* metadata.labels, and metadata.annotations when the user gives some. */}}
{{- define "graceful.metadata" -}}
labels:
  {{- include "graceful.labels" . | nindent 2 }}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The pods' selector: the one label every object of graceful's carries. */}}
{{- define "graceful.selectorLabels" -}}
app.kubernetes.io/name: graceful
{{- end }}

{{- define "graceful.selfManaged" -}}
{{- if eq .Values.certificates.mode "self-managed" }}true{{ else if eq .Values.certificates.mode "cert-manager" }}{{ else }}{{ fail (printf "certificates.mode is self-managed or cert-manager, not %q" .Values.certificates.mode) }}{{ end }}
{{- end }}
