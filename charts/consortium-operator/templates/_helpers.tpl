{{/* Chart name, truncated to 63 characters. */}}
{{- define "consortium-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full object name: <release>-<chart>, or the release name if it contains the chart name. */}}
{{- define "consortium-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Standard labels (app.kubernetes.io/*, helm.sh/chart) on every object. */}}
{{- define "consortium-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "consortium-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: consortium
{{- end }}

{{/* Selector labels: stable across upgrades. */}}
{{- define "consortium-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "consortium-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "consortium-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "consortium-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespaces watched when not cluster-wide (default: the release namespace), as a list. */}}
{{- define "consortium-operator.watchNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- toJson .Values.watch.namespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{- define "consortium-operator.peeringName" -}}
{{- default (include "consortium-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
The operator's RBAC rules on namespaced resources: exactly the API calls of
operator/consortium_operator/kube.py and Kopf's own (tests/charts/test_rbac.py checks this
table against the code). Server-side apply creates objects that do not exist yet, which the
API server authorises as "create" as well as "patch".
*/}}
{{- define "consortium-operator.namespacedRules" -}}
# Consortium resources: Kopf lists and watches them and patches finalizers and its annotations
- apiGroups: [consortium.dev]
  resources: [consortia]
  verbs: [list, watch, patch]
# status written by the operator (kube.patch_status)
- apiGroups: [consortium.dev]
  resources: [consortia/status]
  verbs: [patch]
# genesis/config ConfigMaps: observe (list by the consortium's labels, get), genesis
# create-if-absent, server-side apply, delete; watched (the operator's own, by label: drift)
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, delete]
# key Secrets: observe (one list by the consortium's labels; get for one it lacks), read,
# create-if-absent, add entries (merge patch), delete. `get` already reaches every Secret
# of the namespace by name, so `list` and `watch` widen nothing
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
# peer and client Services: server-side apply, listed and watched by label (drift), delete
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
# node pods: observed by label selector, watched (a pass waiting for them is woken)
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# ledger volumes: listed and deleted on deletionPolicy Delete
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, delete]
# Kubernetes events for phase changes (kopf.info / kopf.warn)
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# one StatefulSet per organisation: observe, list stale ones on deletion, apply, delete;
# watched (a pass waiting for the StatefulSet controller is woken)
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch, delete]
# the quorum PodDisruptionBudget: server-side apply, listed and watched by label (drift), delete
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
# the consortium's NetworkPolicy (issue 7): server-side apply, listed and watched by label
# (drift), delete
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, create, patch, delete]
# the scheduled backup (spec.backup): applied, listed and watched by label (drift), and
# deleted when spec.backup is removed
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [list, watch, create, patch, delete]
{{- end }}
