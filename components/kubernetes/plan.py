"""Kubernetes' plans that are plain values (steps/plan.py): no Pulumi."""
from __future__ import annotations

from pathlib import Path

from config.spec import Spec

from ..steps.plan import Step, check

HERE = Path(__file__).parent
# marks a node drained by hakube for an upgrade (uncordoned after it; one
# cordoned by hand stays cordoned)
DRAINED_MARK = "hakube.io/upgrade-drained"
DRAIN_TIMEOUT = 300
JOINED = "every join done"          # outside the upgrade plan: what it starts after


def packages(node: str) -> str:
    """Outside the upgrade plan: the node's kube-packages step."""
    return f"kube-packages of {node}"


def upgrade_plan(name: str, spec: Spec) -> list[Step]:
    """A change of `kubernetes.version` on a running cluster, as kubeadm's
    upgrade procedure, one node at a time: the first control plane
    (`kubeadm upgrade apply`), each other control plane (`kubeadm upgrade
    node`), then each worker drained (on the first control plane), upgraded,
    uncordoned. The version is in every step's script text, so a change is
    an update of each, in this chain's order; on create (a new node, a new
    cluster) each finds its node at the version and does nothing. The first
    step refuses a downgrade or a skipped minor before anything changes."""
    cps, workers = spec.topology.control_planes, spec.topology.workers
    first = cps[0].name
    common = {"K8S_VERSION": spec.kubernetes.version, "DRAINED_MARK": DRAINED_MARK,
              "DRAIN_TIMEOUT": DRAIN_TIMEOUT,
              "APISERVER_MANIFEST": "/etc/kubernetes/manifests/kube-apiserver.yaml"}
    out: list[Step] = []
    previous: tuple[str, ...] = (JOINED,)
    for i, n in enumerate(cps):
        out.append(Step(f"{name}-{n.name}-upgrade", n.name, HERE / "upgrade.sh",
                        {**common, "ROLE": "first" if i == 0 else "control-plane"},
                        after=(*previous, packages(n.name))))
        previous = (out[-1].name,)
    for n in workers:
        values = {**common, "NODE": n.name}
        drain = Step(f"{name}-{first}-upgrade-drain-{n.name}", first, HERE / "upgrade-drain.sh", values,
                     after=previous)
        upgraded = Step(f"{name}-{n.name}-upgrade", n.name, HERE / "upgrade.sh", {**common, "ROLE": "worker"},
                        after=(drain.name, packages(n.name)))
        uncordon = Step(f"{name}-{first}-upgrade-uncordon-{n.name}", first, HERE / "upgrade-uncordon.sh",
                        values, after=(upgraded.name,))
        out += [drain, upgraded, uncordon]
        previous = (uncordon.name,)
    return check(out, (JOINED, *(packages(n.name) for n in (*cps, *workers))))
