{{- define "doraflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "doraflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: collector, processor or migrate. */}}
{{- define "doraflow.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "doraflow.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The restricted Pod Security Standard: the image's non-root user. */}}
{{- define "doraflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "doraflow.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* What every doraflow container reads: its configuration and the bus. */}}
{{- define "doraflow.env" -}}
- name: DORAFLOW_CONFIG
  value: /etc/doraflow/doraflow.yaml
{{ include "doraflow.natsEnv" . }}
{{- end -}}

{{/* The bus: the migrate Job takes its lock there. */}}
{{- define "doraflow.natsEnv" -}}
- name: DORAFLOW_NATS_URL
  value: {{ .Values.nats.url | quote }}
- name: DORAFLOW_NATS_REPLICAS
  value: {{ .Values.nats.replicas | quote }}
{{- end -}}

{{/* Variables from keys of the Secret; a key it lacks leaves one unset.
Starts with a newline: include it with trim. */}}
{{- define "doraflow.secretEnv" -}}
{{- range $name, $key := .keys }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.root.Values.secret.name }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end -}}

{{- define "doraflow.dsnEnv" -}}
- name: DORAFLOW_CLICKHOUSE_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secret.name }}
      key: {{ .Values.secret.clickhouseDSNKey }}
{{- end -}}

{{/* The configuration file, and a writable /tmp on a read-only root. */}}
{{- define "doraflow.volumeMounts" -}}
- name: config
  mountPath: /etc/doraflow
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "doraflow.volumes" -}}
- name: config
  configMap:
    name: {{ include "doraflow.fullname" . }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{/* Liveness: the process can work (its bus connection is not closed for
good); readiness: bus and ClickHouse answer, and a processor has rebuilt its
state. */}}
{{- define "doraflow.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  failureThreshold: 2
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 2
  failureThreshold: 60
{{- end -}}
