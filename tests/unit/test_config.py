"""Stack config: the shipped stacks load; each bad input is refused with a
message that names its key path."""
import copy
import ipaddress

import pytest

from config import ConfigError, load, load_stack_file, raw_from_stack_file
from tests.conftest import ROOT

STACKS = ["dev", "cka", "minimal", "lab"]


def base() -> dict:
    return copy.deepcopy(raw_from_stack_file(ROOT / "Pulumi.dev.yaml"))


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stacks_load(stack):
    spec = load_stack_file(ROOT, stack)
    assert spec.stack == stack
    assert len(spec.topology.etcd) % 2 == 1


def test_dev_follows_the_seed_topology():
    spec = load_stack_file(ROOT, "dev")
    topo = spec.topology
    assert [n.name for n in topo.etcd] == ["etcd-01", "etcd-02", "etcd-03"]
    assert [n.name for n in topo.control_planes] == ["master-01", "master-02", "master-03"]
    assert [str(n.ip) for n in topo.control_planes] == ["192.168.144.101", "192.168.144.102", "192.168.144.103"]
    assert [str(n.ip) for n in topo.etcd] == ["192.168.144.201", "192.168.144.202", "192.168.144.203"]
    assert str(spec.kubernetes.vip) == "192.168.144.100"
    assert topo.etcd_initial_cluster == (
        "etcd-01=https://192.168.144.201:2380,etcd-02=https://192.168.144.202:2380,"
        "etcd-03=https://192.168.144.203:2380")
    assert topo.etcd_server_sans(topo.etcd[0]) == (
        ("etcd-01", "etcd-01.hakube.internal", "localhost"), ("192.168.144.201", "127.0.0.1"))
    assert topo.etcd_peer_sans(topo.etcd[0]) == (("etcd-01", "etcd-01.hakube.internal"), ("192.168.144.201",))
    assert spec.kubernetes.kubeadm_api == "v1beta4"


def test_cka_is_the_exam_scenario_in_practice_mode():
    spec = load_stack_file(ROOT, "cka")
    assert (len(spec.topology.etcd), len(spec.topology.control_planes)) == (3, 2)
    assert spec.kubernetes.bootstrap is False


def test_stacks_never_collide_on_one_host():
    specs = [load_stack_file(ROOT, s) for s in STACKS]
    names = [n.domain_name for s in specs for n in s.topology.nodes]
    macs = [n.mac for s in specs for n in s.topology.nodes]
    assert len(set(names)) == len(names)
    assert len(set(macs)) == len(macs)
    assert len({s.network.bridge for s in specs}) == len(specs)
    assert len({s.network.network_name for s in specs}) == len(specs)
    nets = [s.network.cidr for s in specs]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])


def test_derived_names_are_stable_and_keyed_by_name():
    a, b = load_stack_file(ROOT, "dev"), load_stack_file(ROOT, "dev")
    assert a.topology == b.topology
    raw = base()
    raw["nodes"]["etcd"]["count"] = 5
    grown = load(raw, "dev")
    # Growing a role adds nodes; it never renames or re-addresses existing ones.
    old = {n.name: (n.ip, n.mac) for n in a.topology.nodes}
    assert all(old[n.name] == (n.ip, n.mac) for n in grown.topology.nodes if n.name in old)


def test_long_stack_names_still_give_valid_bridge_names():
    spec = load(base(), "a-rather-long-stack-name")
    assert len(spec.network.bridge) <= 15


def test_explicit_ips_and_vip_override_the_defaults():
    raw = base()
    raw["nodes"]["etcd"]["ips"] = ["192.168.144.11", "192.168.144.12", "192.168.144.13"]
    raw["kubernetes"] = {"vip": "192.168.144.10", "version": "1.30.4"}
    spec = load(raw, "dev")
    assert [str(n.ip) for n in spec.topology.etcd] == ["192.168.144.11", "192.168.144.12", "192.168.144.13"]
    assert spec.kubernetes.vip == ipaddress.IPv4Address("192.168.144.10")
    assert spec.kubernetes.kubeadm_api == "v1beta3"


def edit(path: str, value):
    """A raw config with `value` at dotted `path` (None deletes)."""
    raw = base()
    keys = path.split(".")
    node = raw
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return raw


BAD = [
    # (description, raw-config edit, key path the message must name, words it must say)
    ("even etcd count", ("nodes.etcd.count", 4), "hakube:nodes.etcd.count", "odd"),
    ("zero etcd count", ("nodes.etcd.count", 0), "hakube:nodes.etcd.count", "at least 1"),
    ("etcd count over 7", ("nodes.etcd.count", 9), "hakube:nodes.etcd.count", "at most 7"),
    ("count as a string", ("nodes.etcd.count", "3"), "hakube:nodes.etcd.count", "whole number"),
    ("ip outside subnet", ("nodes.etcd.ips", ["10.0.0.1", "192.168.144.202", "192.168.144.203"]),
     "hakube:nodes.etcd.ips", "outside the node subnet"),
    ("duplicated ip", ("nodes.controlPlane.ips", ["192.168.144.201", "192.168.144.102", "192.168.144.103"]),
     "hakube:nodes.controlPlane.ips", "already used by"),
    ("ip list length", ("nodes.etcd.ips", ["192.168.144.201"]), "hakube:nodes.etcd.ips", "count 3"),
    ("not an ip", ("nodes.etcd.ips", ["x", "192.168.144.202", "192.168.144.203"]),
     "hakube:nodes.etcd.ips[0]", "not an IPv4 address"),
    ("vip equals a node", ("kubernetes.vip", "192.168.144.101"), "hakube:kubernetes.vip", "master-01"),
    ("vip outside subnet", ("kubernetes.vip", "10.1.1.1"), "hakube:kubernetes.vip", "outside"),
    ("vip is the gateway", ("kubernetes.vip", "192.168.144.1"), "hakube:kubernetes.vip", "gateway"),
    ("pod subnet overlaps nodes", ("kubernetes.podSubnet", "192.168.0.0/16"),
     "hakube:kubernetes.podSubnet", "overlaps the node network"),
    ("service overlaps pods", ("kubernetes.serviceSubnet", "10.244.128.0/20"),
     "hakube:kubernetes.serviceSubnet", "overlaps"),
    ("version not a version", ("kubernetes.version", "latest"), "hakube:kubernetes.version", "not a version"),
    ("version read as a number", ("kubernetes.version", 1.3), "hakube:kubernetes.version", "quote it"),
    ("kubeadm API not rendered", ("kubernetes.version", "1.24.3"), "hakube:kubernetes.version", "1.29 to 1.37"),
    ("control plane cpus", ("nodes.controlPlane.vcpu", 1), "hakube:nodes.controlPlane.vcpu", "kubeadm"),
    ("control plane memory", ("nodes.controlPlane.memoryMiB", 1024), "hakube:nodes.controlPlane.memoryMiB", "1700"),
    ("bad name prefix", ("nodes.controlPlane.namePrefix", "Master_"), "hakube:nodes.controlPlane.namePrefix", "hostname"),
    ("name prefix clash", ("nodes.workers", {"count": 1, "namePrefix": "etcd"}),
     "hakube:nodes.workers.namePrefix", "another role"),
    ("empty image", ("image", {}), "hakube:image", "no image source"),
    ("image url and path", ("image", {"url": "https://x/y.img", "path": "/a.img"}), "hakube:image", "not both"),
    ("relative image path", ("image", {"path": "images/a.img"}), "hakube:image.path", "absolute"),
    ("unknown key", ("nodes.etcd.cuont", 3), "hakube:nodes.etcd.cuont", "unknown key"),
    ("unknown top-level key", ("etdc", {"version": "3.5.1"}), "hakube:etdc", "unknown key"),
    ("etcd version unsupported", ("etcd.version", "3.3.27"), "hakube:etcd.version", "supported etcd releases"),
    ("etcd checksum", ("etcd.sha256", "abc"), "hakube:etcd.sha256", "64"),
    ("election vs heartbeat", ("etcd.electionTimeoutMs", 300), "hakube:etcd.electionTimeoutMs", "5x"),
    ("missing cidr", ("network.cidr", None), "hakube:network.cidr", "required"),
    ("cidr too small", ("network.cidr", "192.168.144.0/26"), "hakube:network.cidr", "/24"),
    ("cidr host bits", ("network.cidr", "192.168.144.5/24"), "hakube:network.cidr", "host bits"),
    ("bridge mode without bridge", ("network.mode", "bridge"), "hakube:network.bridge", "required"),
    ("ssh root", ("ssh", {"user": "root"}), "hakube:ssh.user", "non-root"),
    ("renewal >= validity", ("pki", {"validityHours": 100, "earlyRenewalHours": 100}),
     "hakube:pki.earlyRenewalHours", "less than"),
    ("cert check of no days", ("pki", {"check": {"days": 0}}), "hakube:pki.check.days", "at least 1"),
    ("an I/O class etcd's unit cannot take", ("etcd", {"tuning": {"ioClass": "fastest"}}),
     "hakube:etcd.tuning.ioClass", "must be one of best-effort, realtime, idle"),
    ("an fsync mode that does not exist", ("etcd", {"tuning": {"fsyncCheck": "maybe"}}),
     "hakube:etcd.tuning.fsyncCheck", "must be one of warn, refuse, off"),
    ("renewal past a year", ("kubernetes", {"certRenewal": {"days": 400}}), "hakube:kubernetes.certRenewal.days",
     "at most 300"),
    ("renewal calendar", ("kubernetes", {"certRenewal": {"calendar": "100% monday"}}),
     "hakube:kubernetes.certRenewal.calendar", "not a systemd calendar"),
    ("renewal typo", ("kubernetes", {"certRenewal": {"enable": True}}), "hakube:kubernetes.certRenewal.enable",
     "unknown"),
    ("cert check calendar", ("pki", {"check": {"calendar": "50% of the time"}}), "hakube:pki.check.calendar",
     "systemd calendar"),
    ("lb count 3", ("nodes.loadBalancer.count", 3), "hakube:nodes.loadBalancer.count", "at most 2"),
    ("bootstrap not a bool", ("kubernetes.bootstrap", "no"), "hakube:kubernetes.bootstrap", "boolean"),
    ("unknown cni", ("kubernetes.cni", {"plugin": "weave"}), "hakube:kubernetes.cni.plugin", "calico"),
    ("libvirt uri", ("libvirt", {"uri": "xen:///"}), "hakube:libvirt.uri", "QEMU"),
    ("backup dir is etcd's data dir", ("etcd.backup", {"dir": "/var/lib/etcd"}), "hakube:etcd.backup.dir", "of its own"),
    ("backup retention 0", ("etcd.backup", {"retention": 0}), "hakube:etcd.backup.retention", "at least 1"),
    ("restore snapshot missing", ("etcd.restore", {"snapshot": "/nonexistent/snap.db"}),
     "hakube:etcd.restore.snapshot", "cannot read"),
    ("empty backup calendar", ("etcd.backup", {"calendar": " "}), "hakube:etcd.backup.calendar", "calendar"),
    ("offsite without a remote", ("etcd.backup", {"offsite": {"path": "etcd/dev"}}),
     "hakube:etcd.backup.offsite.remote", "rclone remote's options"),
    ("offsite password in plain config", ("etcd.backup", {"offsite": {
        "remote": {"type": "s3", "secret_access_key": "x"}, "path": "etcd/dev"}}),
     "hakube:etcd.backup.offsite.remote.secret_access_key", "--secret"),
    ("offsite sftp without a pinned host key", ("etcd.backup", {"offsite": {
        "remote": {"type": "sftp", "host": "b.example"}, "path": "etcd/dev"}}),
     "hakube:etcd.backup.offsite.knownHosts", "ssh-keyscan"),
    ("offsite path climbing out", ("etcd.backup", {"offsite": {"remote": {"type": "s3"}, "path": "a/../b"}}),
     "hakube:etcd.backup.offsite.path", "folder on the remote"),
    ("offsite with backups off", ("etcd.backup", {"enabled": False, "offsite": {"remote": {"type": "s3"},
                                                                              "path": "etcd"}}),
     "hakube:etcd.backup.offsite", "etcd.backup.enabled true"),
    ("offsite restore without a remote", ("etcd.restore", {"offsite": "etcd-etcd-01-20261126T060000Z.db",
                                                           "sha256": "a" * 64}),
     "hakube:etcd.restore.offsite", "needs hakube:etcd.backup.offsite"),
    ("offsite restore without a hash", ("etcd.restore", {"offsite": "etcd-etcd-01-20261126T060000Z.db"}),
     "hakube:etcd.restore.sha256", "make backups"),
    ("offsite restore of a name that is no snapshot", ("etcd.restore", {"offsite": "../x.db", "sha256": "a" * 64}),
     "hakube:etcd.restore.offsite", "etcd-<member>-<UTC time>.db"),
    ("recover from a node that is no member", ("etcd.recover", {"from": "master-01"}),
     "hakube:etcd.recover.from", "one of etcd-01, etcd-02, etcd-03"),
    ("recover without a member", ("etcd.recover", {}), "hakube:etcd.recover.from", "required"),
    ("exporter on the etcd metrics port", ("monitoring", {"sources": ["10.0.0.1"], "nodeMetricsPort": 2381}),
     "hakube:monitoring.nodeMetricsPort", "already the etcd or HAProxy metrics port"),
    ("exporter on the kubelet's port", ("monitoring", {"nodeMetricsPort": 10250}),
     "hakube:monitoring.nodeMetricsPort", "taken by etcd or Kubernetes"),
    ("defrag threshold 0", ("etcd.maintenance", {"defragThreshold": 0}), "hakube:etcd.maintenance.defragThreshold",
     "at least 1"),
    ("defrag threshold 100", ("etcd.maintenance", {"defragThreshold": 100}),
     "hakube:etcd.maintenance.defragThreshold", "at most 99"),
    ("negative defrag minimum", ("etcd.maintenance", {"defragMinBytes": -1}),
     "hakube:etcd.maintenance.defragMinBytes", "at least 0"),
    ("empty maintenance calendar", ("etcd.maintenance", {"calendar": ""}), "hakube:etcd.maintenance.calendar",
     "calendar"),
    ("image repository with a scheme", ("kubernetes.imageRepository", "https://registry.example.internal/k8s"),
     "hakube:kubernetes.imageRepository", "no scheme"),
    ("image repository with a space", ("kubernetes.imageRepository", "registry example"),
     "hakube:kubernetes.imageRepository", "not an image repository"),
    ("CNI manifest that is no URL", ("kubernetes.cni", {"plugin": "flannel", "manifestUrl": "kube-flannel.yml"}),
     "hakube:kubernetes.cni.manifestUrl", "not an http(s) URL"),
    ("negative conntrack bound", ("kubernetes.kubeProxy", {"conntrackMaxPerCore": -1}),
     "hakube:kubernetes.kubeProxy.conntrackMaxPerCore", "at least 0"),
    ("conntrack bound as text", ("kubernetes.kubeProxy", {"conntrackMaxPerCore": "0"}),
     "hakube:kubernetes.kubeProxy.conntrackMaxPerCore", "a whole number"),
    ("unknown kube-proxy key", ("kubernetes.kubeProxy", {"maxPerCore": 0}),
     "hakube:kubernetes.kubeProxy.maxPerCore", "known keys here: conntrackMaxPerCore"),
    ("unknown maintenance key", ("etcd.maintenance", {"defragThreshhold": 20}), "hakube:etcd.maintenance.defragThreshhold",
     "known keys here: calendar, defragMinBytes, defragThreshold"),
]


@pytest.mark.parametrize("what,change,path,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_naming_the_key(what, change, path, words):
    with pytest.raises(ConfigError) as err:
        load(edit(*change), "dev")
    lines = [p for p in err.value.problems if p.startswith(path + ":")]
    assert lines, f"no problem names {path}: {err.value.problems}"
    assert any(words in p for p in lines), f"{words!r} not in {lines}"


def test_bad_stack_name_is_refused():
    with pytest.raises(ConfigError, match="stack name"):
        load(base(), "Dev_Stack")


def test_every_problem_is_reported_at_once():
    raw = edit("nodes.etcd.count", 2)
    raw["kubernetes"] = {"version": "nope"}
    with pytest.raises(ConfigError) as err:
        load(raw, "dev")
    assert len(err.value.problems) >= 2


def test_a_restore_and_a_recovery_together_are_refused(tmp_path):
    snap = tmp_path / "s.db"
    snap.write_bytes(b"x")
    raw = edit("etcd.restore", {"snapshot": str(snap)})
    raw["etcd"]["recover"] = {"from": "etcd-01"}
    with pytest.raises(ConfigError, match="a restore and a recovery in the same run"):
        load(raw, "dev")


def test_a_pinned_hash_that_the_local_snapshot_does_not_have_is_refused(tmp_path):
    snap = tmp_path / "s.db"
    snap.write_bytes(b"x")
    with pytest.raises(ConfigError, match="not restoring it"):
        load(edit("etcd.restore", {"snapshot": str(snap), "sha256": "0" * 64}), "dev")


def test_offsite_secrets_are_rclone_options_and_only_key_pem_spans_lines():
    from config.spec import offsite_secrets
    values, problems = offsite_secrets({"key_pem": "-----BEGIN X-----\nAAA\n-----END X-----\n", "pass": "obscured"})
    assert problems == [] and values["key_pem"] == "-----BEGIN X-----\\nAAA\\n-----END X-----"
    _, problems = offsite_secrets({"Secret Key": "x", "pass": "a\nb"})
    assert any("not an rclone option name" in p for p in problems) and any("one line expected" in p for p in problems)
    _, problems = offsite_secrets("just a string")
    assert problems and "expected an object of rclone options" in problems[0]
