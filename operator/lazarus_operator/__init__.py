"""Lazarus operator: watches TrainingJobs and relaunches them from the newest valid checkpoint.

What it holds, in three layers:

- the pure decision core: `decide` dispatches on the job's stage (`jobstatus.Stage`)
  to one policy module each (`finished`, `suspend`, `launch`, `restart`, `running`,
  `failure_policy`), helped by `teardown`, `disruption`, `selection`, `booking`,
  `attempts`, `pods`; it reads `classify` (why a pod ended), `lostwork` (the lost-work
  rule), `spec` (the parsed spec), `builders` (pod manifests) and speaks the
  `vocabulary` (facts, selection, actions, decision) and `jobstatus`/`records`/`status`
  (the typed status and its API form). No I/O, no kopf, no clock.
- the adapters: `cycle` (one reconcile: gather facts, decide, write status, act; the
  one requeue path), `kube` (API calls), `storage` (the checkpoint store), `outbox`
  (events that survive outages), `endpoints`, `metrics`/`accounting`.
- the kopf edge: `handlers` (every kopf decorator), `runtime` (the state handlers
  share, as kopf's memo), `main` (the command).

It may import `lazarus_contract` (the operator <-> trainer contract), `lazarus_store`
(adapters only: `storage`, `handlers`, `main`), kopf (the edge only), prometheus_client
(`metrics`) and the kubernetes client (`kube`, `main`); never `lazarus_trainer` or
torch. The core imports the vocabulary, never an adapter; adapters import the
vocabulary, not the policies.
"""
