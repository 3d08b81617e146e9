"""What a user's `pulumi up` runs after a change, under the real engine's
rules (engine/): which step is same, created, updated or replaced, and which
script runs on which node, in which order."""
import json

import pytest

from components import steps
from tests.plan import Planner, ops, ran, script_of
from tests.realtls import ssh_key_pair

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
        "etcd/firewall.sh", "etcd/start.sh", "steps/job.sh", "etcd/health.sh", "loadbalancer/haproxy.sh",
        "loadbalancer/keepalived.sh", "loadbalancer/vip.sh", "kubernetes/preflight.sh", "kubernetes/nodes-ready.sh", "kubernetes/verify.sh",
        "kubernetes/registry.sh", "steps/metrics.sh"}
    assert all(action == "create" for _, action, _ in scripts)
    starts = [n for n, _, s in scripts if s == "etcd/start.sh"]
    assert starts == [f"hakube-etcd-{m}-start" for m in MEMBERS]
    order = [n for n, _, _ in scripts]
    assert order.index("hakube-etcd-etcd-03-start") < order.index("hakube-etcd-health")
    assert run.deleted and all(r.name in {s.name for s in run.steps if s.op == "replace"} for r in run.deleted)
    # the replaced steps' old copies are deleted: none of them has a delete
    # script that would undo what its replacement just did
    assert p.executor.deletes and not [r.name for r in run.deleted if r.inputs.get("delete")]
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
        "hakube-etcd-02-domain", "hakube-etcd-02-helpers", "hakube-etcd-02-ready", "hakube-etcd-02-ssh-key"]
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


NODES = ("lb-01", *MEMBERS, *MASTERS)


def test_growing_the_stack_rewrites_no_cloud_init_disk_and_names_reach_every_node_by_a_step():
    """etcd 3 -> 5: a running node's cloud-init disk is the same (cloud-init
    would never read a new one); each running node's hosts step is updated
    with the five members' names, and that is all the lb runs."""
    p = fresh()
    run = p.up(lambda raw: raw["nodes"]["etcd"].update(count=5))
    o = ops(run)
    for node in NODES:
        assert f"hakube-{node}-cloudinit" not in o and f"hakube-{node}-domain" not in o, node
        assert o[f"hakube-{node}-hosts"] == "update", node
    hosts = next(s for s in run.steps if s.name == "hakube-master-01-hosts")
    assert "192.168.144.205 etcd-05." in hosts.new.inputs["stdin"]
    assert [n for n, _, _ in ran(run) if "lb-01" in n] == ["hakube-lb-01-hosts"]
    assert {o[f"hakube-etcd-0{i}-cloudinit"] for i in (4, 5)} == {"create"}


def test_one_to_two_load_balancers_adds_a_backup_and_changes_nothing_on_the_first():
    """lb-01 already sends its VRRP adverts to lb-02's address: going to two
    leaves its keepalived (and HAProxy) alone; lb-02's keepalived starts
    after lb-01's is in place, so it starts as backup under a master."""
    p = fresh()
    run = p.up(lambda raw: raw["nodes"]["loadBalancer"].update(count=2))
    o = ops(run)
    assert "hakube-lb-lb-01-keepalived" not in o and "hakube-lb-lb-01-haproxy" not in o
    assert o["hakube-lb-lb-02-keepalived"] == "create" and o["hakube-lb-02-domain"] == "create"
    assert run.depends("hakube-lb-lb-02-keepalived", "hakube-lb-lb-01-keepalived")
    assert [n for n, _, _ in ran(run) if "lb-01" in n] == ["hakube-lb-01-hosts"]


def test_two_to_one_stops_the_leaving_keepalived_before_its_vm_goes():
    p = Planner("dev", {"nodes": {"loadBalancer": {"count": 2}}})
    p.up()
    run = p.up(lambda raw: raw["nodes"]["loadBalancer"].update(count=1))
    assert "hakube-lb-lb-01-keepalived" not in ops(run)
    order = [r.name for r in run.deleted]
    assert order.index("hakube-lb-lb-02-keepalived-leave") < order.index("hakube-lb-02-domain")
    stop = next(r for r in run.deleted if r.name == "hakube-lb-lb-02-keepalived-leave")
    assert "# hakube step: loadbalancer/keepalived-stop.sh" in stop.inputs["delete"]
    assert "hakube-lb-lb-02-keepalived-leave" in p.executor.deletes


def test_an_image_change_replaces_no_volume_and_the_old_image_is_kept_under_the_nodes():
    """A new image is a new volume beside the old one; the old one leaves the
    state without being deleted (retainOnDelete: the root volumes are its
    overlays); no root volume, domain or step changes; every node is
    pending a rebuild, and a rebuild puts that node on the new image."""
    p = fresh()
    targets = p.up().outputs["rebuildTargets"]
    run = p.up(lambda raw: raw.__setitem__("image", {"url": "https://example.test/debian-13.qcow2"}))
    created = [s.name for s in run.steps if s.op == "create"]
    assert len(created) == 1 and created[0].startswith("hakube-image-volume-"), created
    assert not [s for s in run.steps if s.op in ("update", "replace")] and run.ran() == []
    assert [r.name for r in run.deleted] == [next(r.name for r in run.deleted)]
    assert run.deleted[0].name.startswith("hakube-image-volume-") and p.executor.deletes == []
    assert all("image -> the configured one" in line for line in run.outputs["pendingRebuilds"])
    assert len(run.outputs["pendingRebuilds"]) == len(NODES)
    rebuild = p.up(replace=[targets["etcd-02"]], rebuild="etcd-02")
    root = next(s for s in rebuild.steps if s.name == "hakube-etcd-02-root")
    assert root.op == "replace" and "debian-13" not in root.new.inputs["baseVolumeId"]
    assert root.new.inputs["baseVolumeId"] == next(
        r for r in p.engine.state.values() if r.name == created[0]).id
    assert "etcd-02" not in " ".join(rebuild.outputs["pendingRebuilds"])


def _own_key(p: Planner, private: str, public: str, previous: str | None = None):
    p.secrets = {"sshPrivateKey": private, **({"sshPreviousPrivateKey": previous} if previous else {})}
    return lambda raw: raw.setdefault("ssh", {}).update(publicKey=public)


def test_an_ssh_key_rotation_authorizes_the_new_key_over_the_old_one_first_on_each_node():
    """ssh.publicKey/sshPrivateKey to a new pair, sshPreviousPrivateKey the
    old one: on each node the ssh-key step runs first, over the previous
    key, writing the new one; every other step of the node follows with the
    new key (a connection change is an update: each runs again, and each
    is safe to run again); no VM and no cloud-init disk changes. Dropping
    sshPreviousPrivateKey afterwards re-runs only the two steps that used it."""
    old_private, old_public = ssh_key_pair()
    new_private, new_public = ssh_key_pair()
    p = Planner("dev")
    p.up(_own_key(p, old_private, old_public))
    run = p.up(_own_key(p, new_private, new_public, previous=old_private))
    assert not [s for s in run.steps if s.type in LIBVIRT and s.op != "same"]
    assert {s.op for s in run.steps if s.type == "command:remote:Command" and s.op != "same"} == {"update"}
    order = [name for name, _, _ in ran(run)]
    for node in NODES:
        first = order.index(f"hakube-{node}-ssh-key")
        later = [n for n in order if f"-{node}-" in n and not n.endswith(("-ssh-key", "-ready"))]
        assert later and all(order.index(n) > first for n in later), node
        key_step = next(s for s in run.steps if s.name == f"hakube-{node}-ssh-key")
        assert key_step.new.inputs["connection"]["privateKey"] == old_private
        assert new_public.strip() in key_step.script
        helpers = next(s for s in run.steps if s.name == f"hakube-{node}-helpers")
        assert helpers.new.inputs["connection"]["privateKey"] == new_private
    done = p.up(_own_key(p, new_private, new_public))
    assert sorted(n for n, _, _ in ran(done)) == sorted(
        f"hakube-{n}-{s}" for n in NODES for s in ("ready", "ssh-key"))


def test_a_private_key_that_does_not_match_the_public_key_is_refused_before_any_step():
    _, public = ssh_key_pair()
    other_private, _ = ssh_key_pair()
    p = Planner("dev")
    with pytest.raises(BaseException, match="hakube:sshPrivateKey does not belong to hakube:ssh.publicKey"):
        p.up(_own_key(p, other_private, public))
    assert not [s for s in p.engine.steps if s.type == "command:remote:Command" and s.op != "same"]


def test_the_summary_output_names_versions_members_and_each_certificates_expiry():
    """A few lines whose diff a `pulumi preview` shows on one screen: a
    rotation changes exactly the re-issued certificates' expiry there."""
    p = fresh()
    before = p.up().outputs["summary"]
    assert before["etcd"] == {"version": "3.6.14", "members": list(MEMBERS)}
    assert before["kubernetes"]["controlPlanes"] == list(MASTERS) and before["loadBalancers"] == ["lb-01"]
    run = p.up(lambda raw: raw.setdefault("pki", {}).update(rotation="2026-11"))
    after = run.outputs["summary"]["certificatesNotAfter"]
    changed = sorted(k for k in after if after[k] != before["certificatesNotAfter"][k])
    assert changed == sorted([f"{m}-{kind}" for m in MEMBERS for kind in ("server", "peer")]
                             + ["apiserver-etcd-client", "healthcheck-client"])


def test_a_failed_join_retried_later_uses_its_still_valid_token_and_deletes_it_after():
    """master-03's join fails on the first `up`: its token step stays in state
    as it ran ("same" on the next run: nothing mints a new one), so a retry
    however late must find that token valid, which join-token.sh makes so
    (no expiry until join-done deletes it: test_scripts). The retry runs the
    join (create: a failed create leaves nothing in state), then deletes the
    token, then goes on with the worker's join."""
    p = Planner("dev", {"nodes": {"workers": {"count": 1}}})
    p.executor.fail = {"hakube-cp-master-03-kubeadm-join"}
    with pytest.raises(Exception, match="master-03-kubeadm-join"):
        p.up()
    first_token = next(r for r in p.engine.state.values()
                       if r.name == "hakube-cp-master-01-join-token-master-03").outputs["stdout"]
    p.executor.fail = set()
    run = p.up()
    assert ops(run)["hakube-cp-master-03-kubeadm-join"] == "create"
    assert "hakube-cp-master-01-join-token-master-03" not in ops(run)          # same: not minted again
    join = next(s for s in run.steps if s.name == "hakube-cp-master-03-kubeadm-join")
    assert json.loads(first_token)["token"] in join.new.inputs["stdin"]
    order = [name for name, _, _ in ran(run)]
    assert order.index("hakube-cp-master-03-kubeadm-join") < order.index("hakube-cp-master-01-join-done-master-03") \
        < order.index("hakube-workers-master-01-join-token-worker-01") < order.index("hakube-workers-worker-01-kubeadm-join")
    assert ran(run)[order.index("hakube-cp-master-01-join-done-master-03")][2] == "kubernetes/join-done.sh"
    assert p.up().ran() == []                                                   # and then nothing


def test_a_control_plane_or_worker_that_leaves_is_drained_reset_and_forgotten_before_its_vm_goes():
    """3 -> 2 control planes and 1 -> 0 workers: HAProxy drops master-03 in
    the run's updates; then, in the deletes, each leaving node is drained (on
    master-01), reset (on itself), deleted from the API (on master-01), and
    only then its VM goes. Nothing of the staying nodes is deleted."""
    p = Planner("dev", {"nodes": {"workers": {"count": 1}}})
    p.up()

    def shrink(raw):
        raw["nodes"]["controlPlane"]["count"] = 2
        raw["nodes"]["workers"]["count"] = 0
    run = p.up(shrink)
    assert ops(run).get("hakube-lb-lb-01-haproxy") == "update"
    deleted = [r.name for r in run.deleted]
    for node, comp in (("master-03", "cp"), ("worker-01", "workers")):
        drain, reset, forget = (f"hakube-{comp}-master-01-drain-{node}", f"hakube-{comp}-{node}-reset",
                                f"hakube-{comp}-master-01-forget-{node}")
        batch = run.delete_batch
        assert batch(drain) < batch(reset) < batch(forget) < batch(f"hakube-{node}-domain"), run.delete_batches
        # the deletes that ran, on which host, with which script
        ran_deletes = {r.name: r for r in run.deleted if r.name in (drain, reset, forget)}
        assert "kubernetes/leave-drain.sh" in ran_deletes[drain].inputs["delete"]
        assert "kubernetes/leave-reset.sh" in ran_deletes[reset].inputs["delete"]
        assert "kubernetes/leave-forget.sh" in ran_deletes[forget].inputs["delete"]
        assert ran_deletes[drain].inputs["connection"]["host"] == "192.168.144.101"
        assert ran_deletes[reset].inputs["connection"]["host"] != "192.168.144.101"
    assert set(p.executor.deletes) >= {"hakube-cp-master-01-drain-master-03", "hakube-workers-worker-01-reset"}
    assert not [n for n in deleted if "master-01" in n and not n.endswith(("-master-03", "-worker-01"))
                or "master-02" in n]
    haproxy = next(s for s in run.steps if s.name == "hakube-lb-lb-01-haproxy")
    assert "192.168.144.103" not in haproxy.new.inputs["stdin"]


UPGRADE_SCRIPTS = ("kubernetes/upgrade.sh", "kubernetes/upgrade-drain.sh", "kubernetes/upgrade-uncordon.sh")


def test_a_kubernetes_upgrade_is_kubeadms_procedure_one_node_at_a_time():
    """1.36 -> 1.37 with two workers: `kubeadm upgrade apply` on master-01,
    `kubeadm upgrade node` on master-02 then master-03, then each worker
    drained (on master-01), upgraded, uncordoned, strictly one after the
    other; each node's packages step runs but installs nothing (packages.sh
    leaves an installed kubeadm to the upgrade); nothing else restarts or
    re-joins; the checks run after the last worker."""
    p = Planner("dev", {"nodes": {"workers": {"count": 2}}})
    p.up()
    run = p.up(lambda raw: raw.setdefault("kubernetes", {}).update(version="1.37.2"))
    chain = [(name, script) for name, _, script in ran(run) if script in UPGRADE_SCRIPTS]
    up = "hakube-upgrade"
    assert chain == [
        (f"{up}-master-01-upgrade", "kubernetes/upgrade.sh"),
        (f"{up}-master-02-upgrade", "kubernetes/upgrade.sh"),
        (f"{up}-master-03-upgrade", "kubernetes/upgrade.sh"),
        (f"{up}-master-01-upgrade-drain-worker-01", "kubernetes/upgrade-drain.sh"),
        (f"{up}-worker-01-upgrade", "kubernetes/upgrade.sh"),
        (f"{up}-master-01-upgrade-uncordon-worker-01", "kubernetes/upgrade-uncordon.sh"),
        (f"{up}-master-01-upgrade-drain-worker-02", "kubernetes/upgrade-drain.sh"),
        (f"{up}-worker-02-upgrade", "kubernetes/upgrade.sh"),
        (f"{up}-master-01-upgrade-uncordon-worker-02", "kubernetes/upgrade-uncordon.sh"),
    ]
    names = [name for name, _ in chain]
    for earlier, later in zip(names, names[1:]):        # one at a time: each waits for the one before
        assert run.depends(later, earlier), f"{later} must wait for {earlier}"
    assert all(ops(run)[name] == "update" for name in names)
    scripts = {s.name: s.script for s in run.steps if s.name in names}
    assert "ROLE=first" in scripts[f"{up}-master-01-upgrade"]
    assert "ROLE=control-plane" in scripts[f"{up}-master-02-upgrade"]
    assert "ROLE=worker" in scripts[f"{up}-worker-01-upgrade"]
    assert all("K8S_VERSION=1.37.2" in text for text in scripts.values())
    # on the first control plane and the workers' drains: the host that runs them
    assert {s.name for s in run.steps if s.name in names and s.new.inputs["connection"]["host"] == "192.168.144.101"} \
        == {f"{up}-master-01-upgrade", f"{up}-master-01-upgrade-drain-worker-01",
            f"{up}-master-01-upgrade-uncordon-worker-01", f"{up}-master-01-upgrade-drain-worker-02",
            f"{up}-master-01-upgrade-uncordon-worker-02"}
    others = {script for name, _, script in ran(run) if name not in names}
    assert others == {"kubernetes/packages.sh", "steps/file.sh"}, others   # + the kubeadm config file
    for name, _, script in ran(run):
        if script == "kubernetes/packages.sh":   # each node's packages step waits for nothing of the chain
            assert not run.depends(name, f"{up}-master-01-upgrade")
        assert not name.endswith(("-restart", "-join", "-init"))
    assert run.depends("hakube-checks-master-01-nodes-ready", f"{up}-master-01-upgrade-uncordon-worker-02")
    assert p.up().ran() == []


def test_an_encryption_key_rotation_adds_uses_then_rewrites_one_apiserver_at_a_time():
    """kubernetes.encryption.keys [key1] -> [key2, key1] (kubernetes.io's
    "Rotating a decryption key" in one `up`): every control plane learns
    key2 (add), one at a time; then each encrypts with it (use), one at a
    time; then every Secret is written again. Nothing else runs. Dropping
    key1 later rewrites the file (add, use) but not the Secrets."""
    p = fresh()
    run = p.up(lambda raw: raw.setdefault("kubernetes", {}).setdefault("encryption", {}).update(
        keys=["key2", "key1"]))
    # each node's initial step runs too (its stdin changed) and finds its file present: it leaves it
    initial = [name for name, _, _ in ran(run) if name.endswith("-encryption-config")]
    assert sorted(initial) == [f"hakube-cp-{m}-encryption-config" for m in MASTERS]
    chain = [name for name, _, _ in ran(run) if not name.endswith("-encryption-config")]
    assert chain == [f"hakube-cp-{m}-encryption-add" for m in MASTERS] + \
        [f"hakube-cp-{m}-encryption-use" for m in MASTERS] + ["hakube-cp-master-01-encryption-rewrite"], chain
    for earlier, later in zip(chain, chain[1:]):
        assert run.depends(later, earlier)
    assert {script for _, _, script in ran(run)} == {"kubernetes/encryption.sh", "kubernetes/encryption-rewrite.sh"}
    step = next(s for s in run.steps if s.name == "hakube-cp-master-02-encryption-add")
    assert "KEYS=" in step.script and "key2 key1" in step.script and "STAGE=add" in step.script
    drop = p.up(lambda raw: raw["kubernetes"]["encryption"].update(keys=["key2"]))
    assert [name for name, _, _ in ran(drop) if not name.endswith("-encryption-config")] == \
        [f"hakube-cp-{m}-encryption-add" for m in MASTERS] + \
        [f"hakube-cp-{m}-encryption-use" for m in MASTERS]


def test_etcd_tuning_restarts_each_member_once_in_turn_and_new_members_check_their_disk_first():
    """etcd.tuning.nice set on a running cluster: every member's unit is
    rewritten and each member restarts, one at a time (the unit is in its
    restart's text); the defaults render the unit members already run, so
    adding the tuning keys to hakube restarted nobody. A new member's disk
    is measured before it first starts."""
    p = fresh()
    run = p.up(lambda raw: raw.setdefault("etcd", {}).setdefault("tuning", {}).update(nice=-5))
    assert runs_of(run, "etcd/restart.sh") == [f"hakube-etcd-{m}-restart" for m in MEMBERS]
    for a, b in zip(MEMBERS, MEMBERS[1:]):
        assert run.depends(f"hakube-etcd-{b}-restart", f"hakube-etcd-{a}-restart")
    units = [s for s in run.steps if s.name.endswith("-unit") and s.op == "update"]
    assert len(units) == 3 and all("Nice=-5" in s.new.inputs["stdin"] for s in units)
    grow = p.up(lambda raw: raw["nodes"]["etcd"].update(count=5))
    for m in ("etcd-04", "etcd-05"):
        assert grow.depends(f"hakube-etcd-{m}-start", f"hakube-etcd-{m}-disk-check")
        assert (f"hakube-etcd-{m}-disk-check", "create", "etcd/disk-check.sh") in ran(grow)
    assert not [n for n, _, _ in ran(grow) if n in {f"hakube-etcd-{m}-disk-check" for m in MEMBERS}]


# --- off-host backups, restore from off-host, lost quorum ---------------------------

OFFSITE = {"remote": {"type": "sftp", "host": "192.0.2.10", "user": "etcd"}, "path": "etcd/dev",
           "knownHosts": "192.0.2.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMj7"}


def _offsite(p: Planner, config=OFFSITE, key_pem="-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n"):
    p.secrets = {"etcdOffsiteSecrets": json.dumps({"key_pem": key_pem})}
    return lambda raw: raw.setdefault("etcd", {}).setdefault("backup", {}).update(offsite=config)


def test_turning_off_host_backups_on_configures_each_member_then_its_job_and_restarts_nothing():
    """Per member: the offsite step (registered either way, like the
    firewall's) is updated to write rclone's config through a secret stdin
    and check the remote, then the backup job is updated to copy; nothing
    else runs, no etcd restarts. A later change of the secret alone updates
    the offsite steps only. Turning it off updates them to remove the
    config (no delete script: a replaced step's delete runs after the new
    one's create) and the jobs back; nothing is deleted."""
    p = fresh()
    run = p.up(_offsite(p))
    assert ops(run) == {**{f"hakube-etcd-{m}-offsite": "update" for m in MEMBERS},
                        **{f"hakube-etcd-{m}-backup": "update" for m in MEMBERS}}
    for m in MEMBERS:
        step = next(s for s in run.steps if s.name == f"hakube-etcd-{m}-offsite")
        assert script_of(step) == "etcd/backup/offsite.sh" and "OFFSITE=1" in step.script
        assert step.new.inputs["logging"] == "none"          # the stdin carries credentials
        assert "[offsite]\ntype = sftp\n" in step.new.inputs["stdin"]
        assert "known_hosts_file = /etc/hakube/offsite/known_hosts" in step.new.inputs["stdin"]
        assert "key_pem = -----BEGIN OPENSSH PRIVATE KEY-----\\nx\\n" in step.new.inputs["stdin"]
        assert not step.new.inputs.get("delete")
        assert run.depends(f"hakube-etcd-{m}-backup", f"hakube-etcd-{m}-offsite")
    rotated = p.up(_offsite(p, key_pem="-----BEGIN OPENSSH PRIVATE KEY-----\ny\n-----END OPENSSH PRIVATE KEY-----\n"))
    assert ops(rotated) == {f"hakube-etcd-{m}-offsite": "update" for m in MEMBERS}
    off = p.up(lambda raw: raw["etcd"]["backup"].pop("offsite"))
    assert off.deleted == []
    assert ops(off) == {**{f"hakube-etcd-{m}-offsite": "update" for m in MEMBERS},
                        **{f"hakube-etcd-{m}-backup": "update" for m in MEMBERS}}
    assert all("OFFSITE=0" in s.script for s in off.steps if s.name.endswith("-offsite"))


def test_a_rebuild_with_no_vm_key_changed_still_puts_the_member_on_a_new_disk():
    """`make rebuild NODE=etcd-02` for a member lost with its disk, its VM
    keys unchanged: with no diff the provider asks for no
    delete-before-replace, so the root volume carries the option itself;
    its domain is replaced with it and the new machine runs every step."""
    p = fresh()
    targets = p.up().outputs["rebuildTargets"]
    run = p.up(replace=[targets["etcd-02"]], rebuild="etcd-02")
    root = next(s for s in run.steps if s.name == "hakube-etcd-02-root")
    assert root.op == "replace" and root.delete_before_replace
    assert "hakube-etcd-02-domain" in [r.name for r in root.delete_first]
    assert ops(run)["hakube-etcd-02-domain"] == "create"
    assert "hakube-etcd-etcd-02-start" in runs_of(run, "etcd/start.sh")


def test_a_restore_from_off_host_fetches_on_each_member_and_copies_nothing_from_this_machine():
    p = fresh()
    p.up(_offsite(p))
    name, sha = "etcd-etcd-02-20261126T060000Z.db", "ab" * 32
    run = p.up(lambda raw: raw.setdefault("etcd", {}).update(restore={"offsite": name, "sha256": sha}))
    fetches = runs_of(run, "etcd/restore/fetch.sh")
    assert sorted(fetches) == sorted(f"hakube-etcd-restore-{sha[:8]}-{m}-fetch" for m in MEMBERS)
    assert not [s for s in run.steps if s.type == "command:remote:CopyToRemote"]
    order = [n for n, _, _ in ran(run)]
    for m in MEMBERS:
        assert order.index(f"hakube-etcd-restore-{sha[:8]}-{m}-fetch") < order.index(
            f"hakube-etcd-restore-{sha[:8]}-{m}-stop")
        fetch = next(s for s in run.steps if s.name == f"hakube-etcd-restore-{sha[:8]}-{m}-fetch")
        assert f"RESTORE_NAME={name}" in fetch.script and f"RESTORE_SHA={sha}" in fetch.script
    assert p.up().ran() == []


def test_recovering_from_a_survivor_runs_one_step_on_it_and_a_rebuild_then_joins():
    """etcd.recover.from added: one step on the survivor and nothing else;
    a rebuild of a lost member in the same run starts it only after the
    recovery; removing the key deletes the step and runs nothing."""
    p = fresh()
    run = p.up(lambda raw: raw.setdefault("etcd", {}).update(recover={"from": "etcd-02"}))
    assert ops(run) == {"hakube-etcd-recover-etcd-02": "create"}
    assert runs_of(run, "etcd/recover.sh") == ["hakube-etcd-recover-etcd-02"]
    lost = p.up(replace=[run.outputs["rebuildTargets"]["etcd-01"]], rebuild="etcd-01")
    assert "hakube-etcd-etcd-01-start" in runs_of(lost, "etcd/start.sh")
    assert lost.depends("hakube-etcd-etcd-01-start", "hakube-etcd-recover-etcd-02")
    # the survivor itself rebuilt later, the key still set: no machine id in it, not run again
    rebuilt = p.up(replace=[run.outputs["rebuildTargets"]["etcd-02"]], rebuild="etcd-02")
    assert "hakube-etcd-etcd-02-start" in runs_of(rebuilt, "etcd/start.sh")
    assert "hakube-etcd-recover-etcd-02" not in ops(rebuilt)
    gone = p.up(lambda raw: raw["etcd"].pop("recover"))
    assert [r.name for r in gone.deleted] == ["hakube-etcd-recover-etcd-02"] and gone.ran() == []


def test_turning_monitoring_on_installs_the_exporter_on_members_and_control_planes_only():
    """monitoring.sources set: each etcd member's and control plane's metrics
    step is updated to install hakube's exporter (its text names the node's
    address and the sources); load balancers get none; turning it off again
    updates the same steps to remove it (no delete script)."""
    p = fresh()
    run = p.up(lambda raw: raw["monitoring"].update(sources=["192.168.144.1"]) if "monitoring" in raw
               else raw.update(monitoring={"sources": ["192.168.144.1"]}))
    metrics = {n: o for n, o in ops(run).items() if n.endswith("-metrics")}
    assert metrics == {f"hakube-{n}-metrics": "update" for n in (*MEMBERS, *MASTERS)}
    step = next(s for s in run.steps if s.name == "hakube-master-02-metrics")
    assert "METRICS_LISTEN=192.168.144.102:9479" in step.script and "METRICS_SOURCES=192.168.144.1" in step.script
    off = p.up(lambda raw: raw.pop("monitoring"))
    assert {n: o for n, o in ops(off).items() if n.endswith("-metrics")} == metrics and off.deleted == []
    assert all("METRICS=0" in s.script for s in off.steps if s.name.endswith("-metrics"))


def test_allowing_cgroup_v1_runs_each_kubeadm_step_again_which_finds_its_node_done():
    """kubernetes.allowCgroupV1 on a running cluster: the kubeadm config file
    on the first control plane is rewritten, and the init and each join step
    updates (their scripts now pass kubeadm_cgroup_args its key); each runs
    and finds its node already initialized or joined. Nothing is replaced,
    no other script runs, and a second run is quiet."""
    p = fresh()
    run = p.up(lambda raw: raw.setdefault("kubernetes", {}).update(allowCgroupV1=True))
    assert not [name for name, op in ops(run).items() if op not in ("same", "update")], ops(run)
    names = sorted(name for name, _, _ in ran(run))
    assert names == sorted(["hakube-cp-master-01-kubeadm-config", "hakube-cp-master-01-kubeadm-init",
                            "hakube-cp-master-02-kubeadm-join", "hakube-cp-master-03-kubeadm-join"]), names
    init = next(s for s in run.steps if s.name == "hakube-cp-master-01-kubeadm-init")
    assert "ALLOW_CGROUP_V1=1" in init.script and "CGROUP_V1_PREFLIGHT=SystemVerification" in init.script
    assert not [name for name, _, _ in ran(p.up(lambda raw: None))]
