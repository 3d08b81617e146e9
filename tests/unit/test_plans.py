"""Components' plans (steps/plan.py values: which step runs where, with
which script, values and stdin, after what) against snapshots, with no
engine and no mocks: a change of a plan shows here as a diff of plain text.

After a change you mean, write the snapshots again and review their diff:

    HAKUBE_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/test_plans.py
"""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from components.etcd.plan import membership_plan as etcd_membership_plan
from components.etcd.plan import plan as etcd_plan
from components.etcd.plan import restore_plan as etcd_restore_plan
from components.kubernetes.plan import checks_plan, control_plane_plan, upgrade_plan, workers_plan
from components.loadbalancer.plan import plan as loadbalancer_plan
from components.steps import step_name
from components.steps.plan import Copy, Derived, Step, check
from config import load, raw_from_stack_file
from tests.harness import ROOT

SNAPSHOTS = ROOT / "tests" / "unit" / "snapshots"
# what a Derived value is rendered with: a fixed stand-in for the output it
# reads (a PEM), or for a join token step's stdout, what join-token.sh prints
STAND_IN = "-----BEGIN PRIVATE KEY-----\nstand-in\n-----END PRIVATE KEY-----\n"
TOKEN_STAND_IN = json.dumps({"token": "abcdef.0123456789abcdef", "caCertHash": "sha256:" + "0" * 64})


def stand_in(source: str) -> str:
    return TOKEN_STAND_IN if "-join-token-" in source else STAND_IN
CASES = {
    "dev": ("dev", {}),
    "dev-two-load-balancers": ("dev", {"nodes": {"loadBalancer": {"count": 2}}}),
    "minimal": ("minimal", {}),
}


def spec_of(stack: str, overrides: dict):
    raw = raw_from_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value}
    return load(raw, stack)


def lines(text):
    """Text as its lines, so a snapshot's diff reads line by line."""
    return text.splitlines() if isinstance(text, str) and "\n" in text else text


def rendered(plan: list[Step]) -> list[dict]:
    def value(v):
        if isinstance(v, Derived):
            return {"derived from": v.source, "secret": v.secret,
                    "with a stand-in": lines(v.fn(*map(stand_in, v.sources)))}
        return lines(v)
    def copy(c: Copy) -> dict:     # the local file by name only: where it is differs per machine
        return {"name": c.name, "node": c.node, "copies": Path(c.source).name, "to": c.dest, "after": list(c.after)}
    return [copy(s) if isinstance(s, Copy) else {
             "name": s.name, "node": s.node, "script": step_name(s.script) if s.script else None,
             "values": {k: value(v) if isinstance(v, Derived) else str(v) for k, v in s.values.items()},
             "libs": list(s.libs), "stdin": value(s.stdin), "secret": s.secret, "after": list(s.after),
             "delete": step_name(s.delete) if s.delete else None, "gate": s.gate, "converge": s.converge,
             **({"delete_values": {k: value(v) if isinstance(v, Derived) else str(v)
                                   for k, v in s.delete_values.items()}} if s.delete_values else {}),
             **({"update": True} if s.update else {})} for s in plan]


def same_as_snapshot(plan: list[Step], snapshot: str) -> None:
    got = json.dumps(rendered(plan), indent=1) + "\n"
    path = SNAPSHOTS / f"{snapshot}.json"
    if os.environ.get("HAKUBE_UPDATE_SNAPSHOTS"):
        path.write_text(got)
    assert path.exists(), f"no snapshot {path.name}: write it with HAKUBE_UPDATE_SNAPSHOTS=1 (see this file's top)"
    assert got == path.read_text(), (f"the plan differs from {path.name}; if the change is meant, write the "
                                     "snapshots again (HAKUBE_UPDATE_SNAPSHOTS=1) and review their diff")


@pytest.mark.parametrize("case", CASES)
def test_the_load_balancers_plan_is_its_snapshot(case):
    stack, overrides = CASES[case]
    same_as_snapshot(loadbalancer_plan("hakube-lb", spec_of(stack, overrides)), f"loadbalancer-{case}")


@pytest.mark.parametrize("case", ["dev", "dev-two-workers"])
def test_the_upgrade_plan_is_its_snapshot(case):
    """Control planes one at a time, the first first; then each worker
    drained on the first control plane, upgraded, uncordoned."""
    spec = spec_of("dev", {"nodes": {"workers": {"count": 2}}} if case == "dev-two-workers" else {})
    same_as_snapshot(upgrade_plan("hakube-upgrade", spec), f"upgrade-{case}")


def test_the_checks_plan_is_its_snapshot():
    """Nodes Ready, then no local etcd (and Secrets encrypted), then the
    API's write found in etcd from a member, after every join, the CNI and
    the upgrade."""
    spec = spec_of("dev", {"nodes": {"workers": {"count": 1}}})
    same_as_snapshot(checks_plan("hakube-checks", spec), "checks-dev-one-worker")


ETCD_CASES = {
    "dev": {},
    # a lost quorum recovered from etcd-02, the firewall off, no disk check
    "dev-recover-no-firewall": {"etcd": {"recover": {"from": "etcd-02"}, "firewall": False,
                                         "tuning": {"fsyncCheck": "off"}}},
}


@pytest.mark.parametrize("case", ETCD_CASES)
def test_the_etcd_plan_is_its_snapshot(case):
    """Each member's setup, the recovery, the starts in member order (each
    after every firewall) with their jobs, the health gate, the restart
    chain; then the membership step and the firewalls refreshed."""
    spec = spec_of("dev", ETCD_CASES[case])
    same_as_snapshot(etcd_plan("hakube-etcd", spec) + etcd_membership_plan("hakube-etcd", spec), f"etcd-{case}")


OFFSITE = {"remote": {"type": "sftp", "host": "backup.example", "user": "etcd"}, "path": "etcd/dev",
           "knownHosts": "backup.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}


@pytest.mark.parametrize("case", ["file", "offsite-practice"])
def test_the_restore_plan_is_its_snapshot(case, tmp_path):
    """A file of this machine: an upload dir and a copy on each member; an
    off-host snapshot: each member fetches it. The apiservers pause in
    bootstrap mode only; every member stops before any restores, and each
    step that changes a member carries the part of abandon.sh that undoes it."""
    if case == "file":
        snapshot = tmp_path / "snapshot.db"
        snapshot.write_bytes(b"\0" * 4096)
        spec = spec_of("dev", {"etcd": {"restore": {"snapshot": str(snapshot)}}})
    else:
        spec = spec_of("dev", {"kubernetes": {"bootstrap": False}, "etcd": {
            "backup": {"offsite": OFFSITE},
            "restore": {"offsite": "etcd-etcd-01-20260101T000000Z.db", "sha256": "ab" * 32}}})
    same_as_snapshot(etcd_restore_plan("hakube-etcd-restore", spec), f"etcd-restore-{case}")


KUBERNETES_CASES = {
    "dev-one-worker": {"nodes": {"workers": {"count": 1}}},
    # one control plane (no join), audit on, encryption off, cgroup v1 allowed
    "one-control-plane-audit": {"nodes": {"controlPlane": {"count": 1}}, "kubernetes": {
        "audit": {"enabled": True}, "encryption": {"enabled": False}, "allowCgroupV1": True}},
    "practice-one-worker": {"nodes": {"workers": {"count": 1}}, "kubernetes": {"bootstrap": False}},
}


@pytest.mark.parametrize("case", KUBERNETES_CASES)
def test_the_control_plane_and_workers_plans_are_their_snapshots(case):
    """Each node prepared; kubeadm init on the first, each other control
    plane and then each worker joining one at a time with a token minted
    just before on the first (and the three steps whose deletes take a node
    out); the apiserver restarts and the encryption rotation chained after
    the last join. Practice mode stops before kubeadm."""
    spec = spec_of("dev", KUBERNETES_CASES[case])
    same_as_snapshot(control_plane_plan("hakube-cp", spec) + workers_plan("hakube-workers", spec),
                     f"kubernetes-{case}")


def test_plans_import_no_pulumi():
    for path in (ROOT / "components").rglob("plan.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0].startswith("pulumi")], path


def test_a_plan_refuses_a_step_after_one_it_has_not_made_and_a_name_twice():
    a = Step("a", "n1", ROOT / "components" / "steps" / "file.sh")
    with pytest.raises(ValueError, match="b: runs after c"):
        check([a, Step("b", "n1", a.script, after=("c",))])
    with pytest.raises(ValueError, match="a: two steps"):
        check([a, a])
    with pytest.raises(ValueError, match="on create, on delete, or both"):
        Step("c", "n1", None)
