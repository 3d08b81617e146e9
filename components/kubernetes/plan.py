"""Kubernetes' plans that are plain values (steps/plan.py): no Pulumi."""
from __future__ import annotations

from pathlib import Path

from config.spec import Spec

from ..etcd import payloads as etcd_payload
from ..steps.plan import Step, check
from . import payloads as payload

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


# outside the checks' plan: what they start after
WORKERS_JOINED = "the last join"
CNI = "the CNI"
UPGRADED = "the upgrade done"


def checks_plan(name: str, spec: Spec) -> list[Step]:
    """The seed's verification, as gates after bootstrap: every node Ready,
    no etcd pod, every control plane Ready, and a namespace written through
    the API found by etcdctl on an etcd member (converge runs them again)."""
    topo = spec.topology
    first, member = topo.control_planes[0].name, topo.etcd[0].name
    # By name, not by count: a node the stack drops is still listed by the
    # API until its VM goes (deletes come last), and 3 Ready != 2 wanted
    # would fail every run of a shrink.
    ready = Step(f"{name}-{first}-nodes-ready", first, HERE / "nodes-ready.sh",
                 {"NODES": " ".join(n.name for n in (*topo.control_planes, *topo.workers))},
                 after=(WORKERS_JOINED, CNI, UPGRADED), converge=True)
    encryption = spec.kubernetes.encryption_provider if spec.kubernetes.encryption_enabled else ""
    probe = {"CHECK_NAMESPACE": payload.CHECK_NAMESPACE, "CHECK_SECRET": payload.CHECK_SECRET,
             "CHECK_PROBE": payload.CHECK_PROBE, "ENCRYPTION": encryption}
    verify = Step(f"{name}-{first}-no-local-etcd", first, HERE / "verify.sh",
                  {"CONTROL_PLANES": " ".join(n.name for n in topo.control_planes), **probe},
                  after=(ready.name,), converge=True)
    registry = Step(f"{name}-{member}-registry", member, HERE / "registry.sh",
                    {**probe, "PKI_DIR": etcd_payload.PKI_DIR, "ETCD_ENDPOINTS": ",".join(topo.etcd_client_endpoints)},
                    libs=("etcd.sh",), after=(verify.name,), converge=True)
    return check([ready, verify, registry], (WORKERS_JOINED, CNI, UPGRADED))
