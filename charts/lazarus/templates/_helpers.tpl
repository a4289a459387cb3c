{{/* Names and labels shared by every template. */}}

{{- define "lazarus.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lazarus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lazarus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lazarus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "lazarus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lazarus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "lazarus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lazarus.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lazarus.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* More than one replica only with kopf peering (the schema says so too). */}}
{{- define "lazarus.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) -}}
{{- fail "replicaCount > 1 needs peering.enabled=true: standalone replicas would all act on every job" -}}
{{- end -}}
{{- end -}}

{{/*
The rules the operator needs inside each namespace it serves (docs/trainingjob.md).
Verbs are those the code calls: kube.py, cycle.py, and kopf (watch, finalizers
and progress annotations by patch).
*/}}
{{- define "lazarus.namespacedRules" -}}
- apiGroups: [lazarus.dev]
  resources: [trainingjobs]
  # watch + kopf's patches (finalizer, annotations); delete: ttlSecondsAfterFinished
  verbs: [get, list, watch, patch, delete]
- apiGroups: [lazarus.dev]
  resources: [trainingjobs/status]
  verbs: [patch]
- apiGroups: [lazarus.dev]
  resources: [trainingjobs/finalizers]
  # pods and Services name their job as owner with blockOwnerDeletion, which
  # the OwnerReferencesPermissionEnforcement admission plugin checks
  verbs: [update]
- apiGroups: [""]
  resources: [pods]
  # annotate (patch): the checkpoint-now request on a node about to go
  verbs: [list, watch, create, delete, patch]
- apiGroups: [""]
  resources: [services]
  # list, watch: a relaunch knows the headless Service exists (no POST per restart)
  verbs: [list, watch, create]
- apiGroups: [""]
  resources: [secrets]
  # get: the Secret a job names in spec.checkpoint.secretRef, by name; no list or
  # watch, so no other Secret reaches the operator
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  # a job labelled kueue.x-k8s.io/queue-name: the Workload the operator owns
  # (read and created; watched so Kueue's admission or eviction wakes the job;
  # patch: spec.active, deactivated while the job is suspended)
  verbs: [get, list, watch, create, patch]
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads/status]
  # yield the admission after an eviction (pods gone), mark it Finished
  verbs: [patch]
{{- if and .Values.peering.enabled .Values.watchNamespaces }}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch, create]
{{- end }}
{{- end -}}

{{/* The cluster-scoped reads; in cluster-wide mode the peering object too. */}}
{{- define "lazarus.clusterRules" -}}
- apiGroups: [""]
  resources: [nodes]
  # readiness and taints of the nodes a job's pods run on
  verbs: [get, list, watch]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  # kopf notices the TrainingJob CRD (re)appearing
  verbs: [list, watch]
- apiGroups: [kueue.x-k8s.io]
  resources: [resourceflavors, workloadpriorityclasses]
  # an admitted flavor's node labels and tolerations; a priority class's value
  verbs: [get]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: [namespaces]
  # kopf learns which of the watched namespaces exist
  verbs: [list, watch]
{{- else if .Values.peering.enabled }}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch, create]
{{- end }}
{{- end -}}
