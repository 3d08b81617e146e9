"""What a user's `pulumi up` runs after a change, under the real engine's
rules (engine/): which step is same, created, updated or replaced, and which
script runs on which node, in which order."""
import pytest

from components import steps
from tests.plan import Planner, ops, ran

MEMBERS = ("etcd-01", "etcd-02", "etcd-03")
MASTERS = ("master-01", "master-02", "master-03")
LIBVIRT = ("libvirt:index/domain:Domain", "libvirt:index/volume:Volume",
           "libvirt:index/cloudInitDisk:CloudInitDisk", "libvirt:index/network:Network")


@pytest.fixture(scope="module")
def dev():
    """The dev stack after its first `pulumi up`."""
    p = Planner("dev")
    p.up()
    return p


def fresh() -> Planner:
    p = Planner("dev")
    p.up()
    return p


def runs_of(run, script: str) -> list[str]:
    return [name for name, _, s in ran(run) if s == script]


@pytest.mark.parametrize("stack", ["dev", "cka", "minimal"])
def test_a_second_up_with_nothing_changed_runs_nothing(stack):
    p = Planner(stack)
    first = p.up()
    assert len(first.ran()) > 30
    second = p.up()
    assert {s.op for s in second.steps} == {"same"}
    assert second.ran() == [] and second.deleted == []


def test_rotation_restarts_each_member_then_each_apiserver_one_at_a_time():
    p = fresh()
    run = p.up(lambda raw: raw.setdefault("pki", {}).update(rotation="2026-11"))
    assert runs_of(run, "etcd/restart.sh") == [f"hakube-etcd-{m}-restart" for m in MEMBERS]
    assert runs_of(run, "kubernetes/apiserver-restart.sh") == \
        [f"hakube-cp-{m}-apiserver-restart" for m in MASTERS]
    order = [name for name, _, _ in ran(run)]
    assert order.index("hakube-etcd-etcd-03-restart") < order.index("hakube-cp-master-01-apiserver-restart")
    for a, b in zip(MEMBERS, MEMBERS[1:]):
        assert run.depends(f"hakube-etcd-{b}-restart", f"hakube-etcd-{a}-restart")
    for a, b in zip(MASTERS, MASTERS[1:]):
        assert run.depends(f"hakube-cp-{b}-apiserver-restart", f"hakube-cp-{a}-apiserver-restart")
    assert all(action == "update" for name, action, _ in ran(run) if name.endswith("restart"))
    assert not [s for s in run.steps if s.type in LIBVIRT and s.op != "same"]
    assert "hakube-pki-etcd-ca" not in ops(run) and "hakube-pki-etcd-peer-ca" not in ops(run)


def test_an_etcd_upgrade_installs_then_restarts_each_member_one_at_a_time():
    p = Planner("dev", {"etcd": {"version": "3.5.1", "sha256": "a" * 64}})
    p.up()
    run = p.up(lambda raw: raw["etcd"].update(version="3.5.2"))
    assert runs_of(run, "etcd/restart.sh") == [f"hakube-etcd-{m}-restart" for m in MEMBERS]
    assert set(runs_of(run, "etcd/install.sh")) >= {f"hakube-etcd-{m}-install" for m in MEMBERS}
    restart = next(s for s in run.steps if s.name == "hakube-etcd-etcd-02-restart")
    assert "ETCD_VERSION=3.5.2" in restart.script


def test_growing_the_membership_restarts_no_running_member_and_the_apiservers_follow():
    p = fresh()
    run = p.up(lambda raw: raw["nodes"]["etcd"].update(count=5))
    changed = ops(run)
    for m in MEMBERS:
        assert f"hakube-etcd-{m}-restart" not in changed, m
    # the new members' restart steps are created (their script finds a fresh member)
    assert runs_of(run, "etcd/restart.sh") == ["hakube-etcd-etcd-04-restart", "hakube-etcd-etcd-05-restart"]
    starts = runs_of(run, "etcd/start.sh")
    assert starts[-2:] == ["hakube-etcd-etcd-04-start", "hakube-etcd-etcd-05-start"]
    assert run.depends("hakube-etcd-etcd-05-start", "hakube-etcd-etcd-04-start")
    assert runs_of(run, "kubernetes/apiserver-restart.sh") == [f"hakube-cp-{m}-apiserver-restart" for m in MASTERS]
    order = [name for name, _, _ in ran(run)]
    assert order.index("hakube-cp-master-03-apiserver-restart") < order.index("hakube-cp-master-01-kubeadm-config-upload")
    assert order.index("hakube-cp-master-01-kubeadm-config-upload") < order.index("hakube-etcd-membership")
    restart = next(s for s in run.steps if s.name == "hakube-cp-master-02-apiserver-restart")
    servers = ",".join(f"https://192.168.144.20{i}:2379" for i in range(1, 6))
    assert f"ETCD_ENDPOINTS={servers}" in restart.script


def test_shrinking_removes_members_before_their_vms_are_deleted():
    p = Planner("dev", {"nodes": {"etcd": {"count": 5}}})
    p.up()
    run = p.up(lambda raw: raw["nodes"]["etcd"].update(count=3))
    assert runs_of(run, "etcd/membership.sh") == ["hakube-etcd-membership"]
    assert runs_of(run, "etcd/restart.sh") == []
    deleted = {r.name for r in run.deleted}
    assert {"hakube-etcd-04-domain", "hakube-etcd-05-domain", "hakube-etcd-04-root"} <= deleted
    assert not [n for n in deleted if any(m in n for m in MEMBERS)]
    # deletes come after the program: the membership step ran in it, before any of them


def test_editing_a_shared_helper_updates_only_the_helpers_steps(tmp_path, monkeypatch):
    p = fresh()
    edited = {}
    for name, path in steps.LIBS.items():
        copy = tmp_path / name
        copy.write_text(path.read_text() + "# a comment added in review\n")
        edited[name] = copy
    monkeypatch.setattr(steps, "LIBS", edited)
    run = p.up()
    changed = ops(run)
    assert changed and all(name.endswith("-helpers") and op == "update" for name, op in changed.items()), changed
    assert len(changed) == 7                                  # one per node of the dev stack
    assert {s for _, _, s in ran(run)} == {"steps/helpers.sh"}


def test_converge_runs_the_checks_and_repairs_again_and_nothing_else():
    """`make converge` (`pulumi up --replace` of the convergeTargets output):
    each member's firewall, start, jobs, the cluster gate, HAProxy, the VIP
    gate, the etcd preflights and the post-bootstrap checks run again, in
    their usual order; no restart, no install, no kubeadm."""
    p = fresh()
    targets = p.up().outputs["convergeTargets"]
    run = p.up(replace=targets)
    scripts = ran(run)
    assert {s for _, _, s in scripts} == {
        "etcd/firewall.sh", "etcd/start.sh", "etcd/job.sh", "etcd/health.sh", "loadbalancer/haproxy.sh",
        "loadbalancer/vip.sh", "kubernetes/preflight.sh", "kubernetes/nodes-ready.sh", "kubernetes/verify.sh",
        "kubernetes/registry.sh"}
    assert all(action == "create" for _, action, _ in scripts)
    starts = [n for n, _, s in scripts if s == "etcd/start.sh"]
    assert starts == [f"hakube-etcd-{m}-start" for m in MEMBERS]
    order = [n for n, _, _ in scripts]
    assert order.index("hakube-etcd-etcd-03-start") < order.index("hakube-etcd-health")
    assert run.deleted and all(r.name in {s.name for s in run.steps if s.op == "replace"} for r in run.deleted)
    assert p.up().ran() == []


def test_turning_the_firewall_off_takes_the_rules_away_on_every_member():
    """`etcd.firewall: false` updates each member's firewall step, whose
    script removes hakube's table (a step merely dropped from the program
    would run nothing: the rules would stay, frozen at the old membership)."""
    p = fresh()
    run = p.up(lambda raw: raw.setdefault("etcd", {}).update(firewall=False))
    assert sorted(runs_of(run, "etcd/firewall.sh")) == [f"hakube-etcd-{m}-firewall" for m in MEMBERS]
    for m in MEMBERS:
        s = next(s for s in run.steps if s.name == f"hakube-etcd-{m}-firewall")
        assert s.op == "update" and "FIREWALL=0" in s.script
    assert runs_of(run, "etcd/restart.sh") == []
    deleted = {r.name for r in run.deleted}
    assert {f"hakube-etcd-{m}-firewall-unit" for m in MEMBERS} <= deleted
    back = p.up(lambda raw: raw["etcd"].update(firewall=True))
    assert {f"hakube-etcd-{m}-firewall" for m in MEMBERS} <= set(runs_of(back, "etcd/firewall.sh"))


# --- changes that replace VMs (issue 13) -------------------------------------------

def _vm_keys(raw):
    raw["nodes"]["etcd"] = {**raw["nodes"].get("etcd", {}), "diskGiB": 40, "vcpu": 4, "memoryMiB": 4096}
    raw["nodes"]["controlPlane"] = {**raw["nodes"].get("controlPlane", {}), "memoryMiB": 8192}


def test_vm_keys_reach_no_existing_vm_by_themselves_and_say_which_nodes_differ():
    """diskGiB/vcpu/memory force a replace of a Volume or Domain, delete-before-
    replace, for every node of the role at once: an edit alone replaces
    nothing and runs nothing; `pendingRebuilds` names each node that differs."""
    p = fresh()
    p.up()
    run = p.up(_vm_keys)
    assert ops(run) == {} and run.ran() == [] and run.deleted == []
    pending = run.outputs["pendingRebuilds"]
    assert [line.split(":")[0] for line in pending] == [*MEMBERS, "master-01",
                                                         "master-02", "master-03"]
    assert pending[0] == "etcd-01: disk 20 GiB -> 40 GiB, vcpu 2 -> 4, memory 2048 -> 4096 MiB", pending[0]


def test_a_rebuild_replaces_one_member_and_runs_only_its_steps_and_it_rejoins():
    """`make rebuild NODE=etcd-02` (HAKUBE_REBUILD + `pulumi up --replace` of
    its root volume): that volume and its domain are replaced, delete-before-
    replace; the new machine runs every step of etcd-02 (its id is in their
    text), start.sh among them (it joins as a learner, replacing its old
    entry); no other node runs anything; the next plain up runs nothing."""
    p = fresh()
    targets = p.up().outputs["rebuildTargets"]
    p.up(_vm_keys)
    run = p.up(replace=[targets["etcd-02"]], rebuild="etcd-02")
    vms = {n: op for n, op in ops(run).items() if n.endswith(("-root", "-domain", "-cloudinit"))}
    assert vms == {"hakube-etcd-02-root": "replace", "hakube-etcd-02-domain": "create"}, vms
    root = next(s for s in run.steps if s.name == "hakube-etcd-02-root")
    # delete-before-replace: the domain on it is deleted first (a dependent
    # replacement), then the volume, then both are created
    assert root.delete_before_replace and sorted(r.name for r in root.delete_first) == [
        "hakube-etcd-02-domain", "hakube-etcd-02-helpers", "hakube-etcd-02-ready"]
    assert run.deleted == []
    assert ran(run) and all("etcd-02-" in n for n, _, _ in ran(run)), [n for n, _, _ in ran(run)]
    scripts = [s for _, _, s in ran(run)]
    assert "etcd/start.sh" in scripts and "etcd/install.sh" in scripts and "steps/helpers.sh" in scripts
    assert [line.split(":")[0] for line in run.outputs["pendingRebuilds"]][:2] == ["etcd-01", "etcd-03"]
    assert p.up().ran() == []


def test_a_rebuild_of_a_kubernetes_node_is_refused_by_name():
    p = fresh()
    p.up()
    with pytest.raises(BaseException, match="master-02 is a controlPlane node: hakube rebuilds etcd members "
                                            "and load balancers only"):
        p.up(rebuild="master-02")
