"""What `make review` says of Kubernetes' scripts (steps/plan.py Note)."""
from __future__ import annotations

from ..steps.plan import RUNS_AGAIN, Note

NOTES = {
    "upgrade.sh": Note(danger="Kubernetes is upgraded one node at a time on {nodes}: each control plane's static "
                              "pods restart, each node is drained and its kubelet restarted",
                       # a new node joins at the version: its upgrade step finds nothing to do
                       danger_when=RUNS_AGAIN,
                       check="Kubernetes' upgrade policy against what each node runs (one minor at a time, never "
                             "down); each control plane Ready at the new version before the next one starts"),
    "apiserver-restart.sh": Note(restarts="kube-apiserver",
                                 check="each apiserver is ready again before the next restarts"),
    "preflight.sh": Note(check="every etcd endpoint answers with the apiserver's client certificate"),
    "upgrade-drain.sh": Note(check="each worker drained (PodDisruptionBudgets honored) before its packages change"),
    "leave-drain.sh": Note(check="a leaving node is drained (PodDisruptionBudgets honored) before it is reset and "
                                 "its VM goes"),
}
