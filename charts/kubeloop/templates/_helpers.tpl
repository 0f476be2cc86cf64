{{/* Chart name, truncated to 63 characters (a label value limit). */}}
{{- define "kubeloop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-kubeloop unless the release name already holds the chart name. */}}
{{- define "kubeloop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubeloop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable across upgrades, never add to them. */}}
{{- define "kubeloop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeloop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels on every object. */}}
{{- define "kubeloop.labels" -}}
helm.sh/chart: {{ include "kubeloop.chart" . }}
app.kubernetes.io/name: {{ include "kubeloop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubeloop
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The leader-election Lease of the operator's replicas (in the release namespace). */}}
{{- define "kubeloop.leaseName" -}}
{{- printf "%s-leader" (include "kubeloop.fullname" .) -}}
{{- end -}}

{{- define "kubeloop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubeloop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required with serviceAccount.create=false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubeloop.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Security contexts of every pod and container of the chart: values.yaml holds the Pod Security
Standard "restricted" ones, a user's keys replace them one by one (Helm drops a key set to
null), and values.schema.json refuses what "restricted" forbids.
*/}}
{{- define "kubeloop.containerSecurityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}

{{- define "kubeloop.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{/*
The operator pod's topologySpreadConstraints; an entry without labelSelector selects the
operator pod (a constraint without one counts no pods, so it would spread nothing).
*/}}
{{- define "kubeloop.topologySpreadConstraints" -}}
{{- $constraints := list -}}
{{- range .Values.topologySpreadConstraints -}}
{{- $c := deepCopy . -}}
{{- if not $c.labelSelector -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "kubeloop.selectorLabels" $ | fromYaml)) -}}
{{- end -}}
{{- $constraints = append $constraints $c -}}
{{- end -}}
{{- toYaml $constraints -}}
{{- end -}}

{{/* Namespace of a Prometheus Operator monitor: its own value, else the release namespace. */}}
{{- define "kubeloop.monitorNamespace" -}}
{{- default .root.Release.Namespace .monitor.namespace -}}
{{- end -}}

{{/* relabelings and metricRelabelings of a monitor's endpoint, when set. */}}
{{- define "kubeloop.relabelings" -}}
{{- with .relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
checkov skips, each with its reason (rendered as checkov.io/skipN annotations). The digest skip
is rendered only while the image is pinned by tag; with image.digest set the check passes. The
high-UID skip only while no runAsUser is set (the OpenShift recipe).
*/}}
{{- define "kubeloop.checkovSkips" -}}
{{- $skips := list -}}
{{- if ne .Values.image.pullPolicy "Always" -}}
{{- $skips = append $skips "CKV_K8S_15=The image is pinned to the chart's appVersion (or a digest), so IfNotPresent pulls the same bits; it also lets kind-loaded images run." -}}
{{- end -}}
{{- if not .Values.image.digest -}}
{{- $skips = append $skips "CKV_K8S_43=Pinned by the release tag by default (chart and images are released together); set image.digest to pin by digest." -}}
{{- end -}}
{{- if not (or .Values.securityContext.runAsUser .Values.podSecurityContext.runAsUser) -}}
{{- $skips = append $skips "CKV_K8S_40=runAsUser is left to the platform (OpenShift's restricted-v2 SCC assigns a UID from the namespace's range); runAsNonRoot stays true." -}}
{{- end -}}
{{- range $i, $s := concat $skips (default list .extra) }}
checkov.io/skip{{ add1 $i }}: {{ $s | quote }}
{{- end -}}
{{- end -}}

{{/*
Rules across values that values.schema.json cannot state (JSON Schema compares a value with
constants, never with another value). Included by the Deployment, so `helm template`,
`helm install` and `helm lint` all stop here.
*/}}
{{- define "kubeloop.validateValues" -}}
{{- if eq (int .Values.operator.probePort) (int .Values.operator.metricsPort) -}}
{{- include "kubeloop.refuse" (printf "operator.probePort and operator.metricsPort are both %d: kopf's /healthz and the /metrics server each bind their own port, and the operator exits when the second cannot; set one of them to another port" (int .Values.operator.probePort)) -}}
{{- end -}}
{{- $election := .Values.leaderElection -}}
{{- if gt (mulf 2.0 (float64 $election.renewSeconds)) (float64 $election.leaseDurationSeconds) -}}
{{- include "kubeloop.refuse" (printf "leaderElection.renewSeconds (%v) is more than half of leaderElection.leaseDurationSeconds (%v): a leader stops acting when it could not renew for their difference, which must leave room for a second try; lower renewSeconds or raise leaseDurationSeconds" $election.renewSeconds $election.leaseDurationSeconds) -}}
{{- end -}}
{{- end -}}

{{/*
Stop rendering with a message. `fail` gives the clean error of `helm template`/`install`, but
`helm lint` turns `fail` into a log line and passes; including a template that does not exist
is an error even there, and the missing name carries the message.
*/}}
{{- define "kubeloop.refuse" -}}
{{- fail . -}}
{{- include (printf "values refused: %s" .) dict -}}
{{- end -}}
