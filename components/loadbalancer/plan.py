"""The load balancers' plan: HAProxy on each, then keepalived one at a
time (the preferred one first: a joining load balancer starts as backup
under a master it already hears), then the VIP check. Plain values
(steps/plan.py): no Pulumi."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from config.spec import Spec
from config.topology import NodeSpec

from ..steps.plan import READY, Derived, Step, check
from . import payloads as payload

HERE = Path(__file__).parent
VRRP_KEY = "vrrp-key"       # the generated key (PEM) the VRRP password is derived from


def _keepalived_conf(spec: Spec, node: NodeSpec, key_pem: str) -> str:
    return payload.keepalived_conf(spec, node, payload.auth_pass(key_pem))


def plan(name: str, spec: Spec) -> list[Step]:
    k8s, lbs = spec.kubernetes, spec.topology.load_balancers
    values = {"API_PORT": k8s.api_port, "VIP": k8s.vip}
    cfg = payload.haproxy_cfg(spec)
    haproxy = [Step(f"{name}-{n.name}-haproxy", n.name, HERE / "haproxy.sh", values, stdin=cfg,
                    after=(READY,), converge=True) for n in lbs]
    out, previous, keepalived = list(haproxy), (), []
    for n, proxy in zip(lbs, haproxy):
        keep = Step(f"{name}-{n.name}-keepalived", n.name, HERE / "keepalived.sh", values,
                    stdin=Derived(VRRP_KEY, partial(_keepalived_conf, spec, n)), secret=True,
                    after=(proxy.name, *previous), converge=True)
        # A load balancer that leaves the stack stops keepalived before its
        # VM goes (a backup leaves quietly; a master hands the VIP over at
        # once rather than after ~3 s of silence). A step of its own that
        # does nothing else and is never replaced: the delete of a replaced
        # step runs too (after its replacement's create), and the keepalived
        # step is replaced by `make converge`.
        leave = Step(f"{name}-{n.name}-keepalived-leave", n.name, None, delete=HERE / "keepalived-stop.sh",
                     gate=True, after=(keep.name,))
        out += [keep, leave]
        keepalived.append(keep)
        previous = (keep.name,)
    out.append(Step(f"{name}-vip", lbs[0].name, HERE / "vip.sh", values,
                    after=tuple(s.name for s in (*haproxy, *keepalived)), converge=True))
    return check(out)
