"""The resource graph of each stack under Pulumi's mocks: counts, names,
parents, secrets, ordering of the etcd steps, and stability across runs."""
from collections import Counter

import pytest

from config import load_stack_file, raw_from_stack_file
from tests.conftest import ROOT
from tests.graph.mocks import KEY_MARK, EchoMocks
from tests.harness import is_secret, run_program, unwrap

CMD = "command:remote:Command"
STACKS = {
    # stack: (load balancers, etcd, control planes, workers, bootstrap)
    "dev": (1, 3, 3, 0, True),
    "cka": (1, 3, 2, 0, False),
    "minimal": (1, 1, 1, 0, True),
}
LB_STEPS = ("haproxy", "keepalived", "keepalived-leave")   # per load balancer
NODE_STEPS = ("ready", "ssh-key", "helpers", "hosts")   # per node, before any other
CP_STEPS = ("kernel", "containerd", "kube-packages", "etcdctl", "etcd-certs", "cert-check", "etcd-preflight")
JOIN_STEPS = ("join-token", "kubeadm-join", "join-done", "forget", "reset", "drain")   # + the leave steps
FIRST_CP_STEPS = ("kubeadm-config", "kubeadm-init", "cni", "kubeconfig", "export-shared-certs")
CHECK_STEPS = ("nodes-ready", "no-local-etcd", "registry")
ETCD_STEPS = ("prepare", "cluster", "install", "certs", "config", "unit", "disk-check", "firewall-unit", "firewall", "offsite", "start", "backup",
              "maintenance", "cert-check", "restart", "firewall-refresh")


def run(stack: str, overrides: dict | None = None, mocks=None):
    raw = raw_from_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    for key, value in (overrides or {}).items():
        raw[key] = {**raw.get(key, {}), **value}
    return run_program(stack, raw, mocks or EchoMocks())


@pytest.fixture(scope="module", params=list(STACKS))
def stack_run(request):
    return request.param, run(request.param)


def test_expected_count_of_each_resource_type(stack_run):
    stack, r = stack_run
    lb, etcd, cp, wk, bootstrap = STACKS[stack]
    nodes = lb + etcd + cp + wk
    counts = Counter(reg.type for reg in r.registrations)
    assert counts["libvirt:index/network:Network"] == 1
    assert counts["libvirt:index/volume:Volume"] == nodes + 1          # roots + base image
    assert counts["libvirt:index/cloudInitDisk:CloudInitDisk"] == nodes
    assert counts["libvirt:index/domain:Domain"] == nodes
    assert counts["hakube:node:Node"] == nodes
    # SSH key + 2 CAs + per node a host key + per member server/peer + 2 client certs + VRRP
    # (+ the encryption seed when hakube runs kubeadm)
    assert counts["tls:index/privateKey:PrivateKey"] == 1 + 2 + nodes + 2 * etcd + 2 + 1 + bool(bootstrap)
    assert counts["tls:index/locallySignedCert:LocallySignedCert"] == 2 * etcd + 2
    kubernetes = len(CP_STEPS) * cp + 3 * wk + (
        len(FIRST_CP_STEPS) + len(JOIN_STEPS) * (cp - 1 + wk) + len(CHECK_STEPS) + cp   # + apiserver restarts
        + (cp - 1)                                                  # + the joiners' shared certs
        + cp + 3 * wk                                               # + the upgrade chain
        + cp                                                        # + kubeadm's certificate renewal timers
        + 3 * cp + 1                                                # + encryption: initial, add, use; rewrite
        + 1 if bootstrap else 1)                                    # + kubeadm-config upload
    assert counts[CMD] == (len(NODE_STEPS) * nodes + len(ETCD_STEPS) * etcd + 2   # node steps, etcd, health, membership
                           + len(LB_STEPS) * lb + 1                 # haproxy, VIP gate
                           + etcd + cp                              # hakube's exporter (or its removal)
                           + kubernetes)


def test_libvirt_resources_have_explicit_unique_names(stack_run):
    stack, r = stack_run
    names = []
    for reg in r.registrations:
        if reg.type.startswith("libvirt:index/"):
            assert reg.inputs.get("name"), f"{reg.name} has no explicit libvirt name"
            names.append(reg.inputs["name"])
            assert f"hakube-{stack}" in reg.inputs["name"]
    assert len(names) == len(set(names))


def test_every_resource_is_parented(stack_run):
    _, r = stack_run
    for reg in r.registrations:
        parent_type = reg.parent.split("::")[2].split("$")[-1] if reg.parent else ""
        if reg.type == "hakube:cluster:Cluster":
            assert parent_type == "pulumi:pulumi:Stack"
        else:
            assert parent_type.startswith("hakube:"), f"{reg.name} is parented to {reg.parent!r}"


def test_libvirt_resources_use_the_stack_provider(stack_run):
    _, r = stack_run
    for reg in r.registrations:
        if reg.type.startswith("libvirt:index/"):
            assert "pulumi:providers:libvirt::hakube-libvirt" in reg.provider, reg.name


def test_private_keys_are_secret_everywhere(stack_run):
    _, r = stack_run
    for reg in r.of_type("tls:index/privateKey:PrivateKey"):
        assert {"privateKeyPem", "privateKeyOpenssh"} <= set(reg.options["additional_secret_outputs"])

    def walk(value, where):
        if is_secret(value):
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")
        else:
            assert KEY_MARK not in str(value), f"private key material in plain input {where}"
    for reg in r.registrations:
        walk(reg.inputs, reg.name)
    assert is_secret(r.outputs["sshPrivateKey"])
    for key, value in r.outputs.items():
        if key != "sshPrivateKey":
            assert KEY_MARK not in str(unwrap(value)), key


def test_no_private_key_text_reaches_a_command_line(stack_run):
    _, r = stack_run
    for reg in r.of_type(CMD):
        for field in ("create", "update", "delete"):
            text = str(unwrap(reg.inputs.get(field, "")))
            assert KEY_MARK not in text and "PRIVATE KEY" not in text, f"{reg.name}.{field}"


def test_node_readiness_gates_wait_for_their_domain_and_pin_host_keys(stack_run):
    stack, r = stack_run
    spec = load_stack_file(ROOT, stack)
    for node in spec.topology.nodes:
        gate = r.by_name(f"hakube-{node.name}-ready")
        assert r.depends(gate.name, f"hakube-{node.name}-domain")
        conn = unwrap(gate.inputs["connection"])
        assert conn["host"] == str(node.ip)
        assert conn["hostKey"] == f"ssh-ed25519 AAAAhakube-{node.name}-hostkey"
        assert conn["dialErrorLimit"] >= 30
        assert "cloud-init status --wait" in gate.inputs["create"]
        domain = r.by_name(f"hakube-{node.name}-domain").inputs
        assert domain["networkInterfaces"][0]["mac"] == node.mac
        assert domain["vcpu"] == node.vcpu and domain["memory"] == node.memory_mib


def test_cloud_init_user_data_is_secret(stack_run):
    _, r = stack_run
    for reg in r.of_type("libvirt:index/cloudInitDisk:CloudInitDisk"):
        assert is_secret(reg.inputs["userData"]), reg.name  # it carries the host private key


def test_two_runs_give_identical_urns():
    a, b = run("dev"), run("dev")
    assert [x.urn for x in a.registrations] != []
    assert sorted(x.urn for x in a.registrations) == sorted(x.urn for x in b.registrations)


# --- the etcd cluster's steps -------------------------------------------------

@pytest.fixture(scope="module")
def dev():
    return run("dev")


def step(member, name):
    return f"hakube-etcd-{member}-{name}"


MEMBERS = ["etcd-01", "etcd-02", "etcd-03"]


def test_each_member_runs_its_steps_in_order(dev):
    for m in MEMBERS:
        assert dev.depends(step(m, "prepare"), f"hakube-{m}-ready")
        assert dev.depends(step(m, "install"), step(m, "prepare"))
        assert dev.depends(step(m, "unit"), step(m, "install"))        # verify needs the binary
        assert dev.depends(step(m, "firewall"), step(m, "firewall-unit"))
        for before in ("install", "certs", "config", "unit", "firewall"):
            assert dev.depends(step(m, "start"), step(m, before)), before


def test_members_start_one_after_another_each_after_every_firewall(dev):
    """Serial: a joining member needs the one before it promoted (etcd admits
    one learner at a time); every firewall first: the members already running
    must admit a new one's peer traffic before it dials them."""
    assert dev.depends(step("etcd-02", "start"), step("etcd-01", "start"))
    assert dev.depends(step("etcd-03", "start"), step("etcd-02", "start"))
    assert not dev.depends(step("etcd-01", "start"), step("etcd-02", "start"))
    for m in MEMBERS:
        for other in MEMBERS:
            assert dev.depends(step(m, "start"), step(other, "firewall")), (m, other)
    # and none of them waits for a quorum: a bootstrapping member returns once it listens
    script = dev.by_name(step("etcd-01", "start")).inputs["create"]
    assert "systemctl start --no-block etcd" in script and "member add" in script and "--learner" in script


def test_membership_step_runs_after_the_control_planes_then_refreshes_firewalls(dev):
    membership = "hakube-etcd-membership"
    assert dev.depends(membership, step("etcd-03", "restart"))
    for cp in ("master-01", "master-02", "master-03"):
        assert dev.depends(membership, f"hakube-cp-{cp}-apiserver-restart")
    for m in MEMBERS:
        assert dev.depends(step(m, "firewall-refresh"), membership)
    script = dev.by_name(membership).inputs["create"]
    assert "member remove" in script and "move-leader" in script
    assert "etcd-01=https://192.168.144.201:2380,etcd-02=https://192.168.144.202:2380,etcd-03=" in script


def test_a_membership_change_alone_restarts_no_running_member():
    """3 -> 5: the new members get every step; the three running ones keep
    their restart payload (initial-cluster is read only at creation) while
    their firewalls, the health gate and the membership step see all five."""
    three, five = run("dev"), run("dev", {"nodes": {"etcd": {"count": 5}}})
    for m in MEMBERS:
        assert unwrap(three.by_name(step(m, "restart")).inputs["update"]) == \
            unwrap(five.by_name(step(m, "restart")).inputs["update"]), m
        assert "192.168.144.205" in five.by_name(step(m, "firewall")).inputs["stdin"]
    assert five.depends(step("etcd-05", "start"), step("etcd-04", "start"))
    assert five.depends(step("etcd-04", "start"), step("etcd-03", "start"))
    assert "etcd-05=https://192.168.144.205:2380" in five.by_name("hakube-etcd-health").inputs["create"]
    kubeadm = unwrap(five.by_name("hakube-cp-master-01-kubeadm-config").inputs["stdin"])
    assert "https://192.168.144.205:2379" in kubeadm


def test_health_gate_waits_for_every_start(dev):
    for m in MEMBERS:
        assert dev.depends("hakube-etcd-health", step(m, "start"))


def test_restarts_are_chained_one_member_at_a_time_after_the_gate(dev):
    assert dev.depends(step("etcd-01", "restart"), "hakube-etcd-health")
    assert dev.depends(step("etcd-02", "restart"), step("etcd-01", "restart"))
    assert dev.depends(step("etcd-03", "restart"), step("etcd-02", "restart"))
    r = dev.by_name(step("etcd-02", "restart")).inputs
    assert r["create"] == r["update"] and "systemctl restart etcd" in r["update"] and "triggers" not in r


def test_keys_travel_only_through_stdin_with_logging_off(dev):
    for m in MEMBERS:
        certs = dev.by_name(step(m, "certs")).inputs
        assert is_secret(certs["stdin"])
        assert certs["logging"] == "none"
        bundle = unwrap(certs["stdin"])
        assert bundle.count("-----BEGIN PRIVATE KEY-----") == 3      # server, peer, healthcheck
        assert f"hakube-pki-{m}-server-gen0" in bundle
        assert f"{KEY_MARK}-hakube-pki-etcd-ca" not in bundle         # the CA key never leaves Pulumi
    for reg in dev.of_type(CMD):
        if KEY_MARK in str(unwrap(reg.inputs.get("stdin", ""))):
            assert reg.inputs.get("logging") == "none", reg.name


def test_config_and_install_carry_the_member_values(dev):
    cfg = dev.by_name(step("etcd-02", "config")).inputs["stdin"]
    assert "name: etcd-02" in cfg and "https://192.168.144.202:2380" in cfg
    assert "initial-cluster-token: hakube-dev" in cfg
    install = dev.by_name(step("etcd-02", "install")).inputs["create"]
    assert "ETCD_VERSION=3.6.14" in install and "etcd-v3.6.14-linux-amd64.tar.gz" in install
    for reg in dev.of_type(CMD):
        assert "environment" not in reg.inputs, f"{reg.name}: sshd drops environment= variables"


def test_one_members_new_cert_reruns_only_that_members_steps():
    before = run("dev")
    after = run("dev", mocks=EchoMocks(cert_generation={"hakube-pki-etcd-02-server": 1}))

    def commands(run_):
        return {r.name: unwrap({k: v for k, v in r.inputs.items() if k != "connection"})
                for r in run_.of_type(CMD)}
    a, b = commands(before), commands(after)
    changed = sorted(n for n in a if a[n] != b[n])
    assert changed == [step("etcd-02", "certs"), step("etcd-02", "restart")]


def test_peer_certs_come_from_their_own_ca(dev):
    """Only the peer CA signs peer certs, and members trust only it on 2380:
    a client cert (signed by the etcd CA) is no peer."""
    for reg in dev.of_type("tls:index/locallySignedCert:LocallySignedCert"):
        ca = unwrap(reg.inputs["caCertPem"])
        want = "hakube-pki-etcd-peer-ca" if reg.name.endswith("-peer") else "hakube-pki-etcd-ca-gen"
        assert want in ca, reg.name
    cfg = dev.by_name(step("etcd-01", "config")).inputs["stdin"]
    assert "trusted-ca-file: /etc/etcd/pki/peer-ca.crt" in cfg


def test_every_member_gets_its_backup_timer_after_it_started(dev):
    for m in MEMBERS:
        backup = dev.by_name(step(m, "backup"))
        assert dev.depends(backup.name, step(m, "start"))
        assert "BACKUP_RETENTION=14" in backup.inputs["stdin"]
        assert "OnCalendar=*-*-* 00/6:00:00" in backup.inputs["create"]
    assert dev.outputs["etcdLatestSnapshot"]["path"] == "/var/backups/etcd/latest.db"


def test_restore_stops_everything_before_restoring_the_same_snapshot_everywhere(tmp_path):
    snap = tmp_path / "snap.db"
    snap.write_bytes(b"a snapshot")
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["etcd"] = {"restore": {"snapshot": str(snap)}}
    r = run_program("dev", raw, EchoMocks())
    sha = __import__("hashlib").sha256(b"a snapshot").hexdigest()
    name = lambda node, s: f"hakube-etcd-restore-{sha[:8]}-{node}-{s}"  # noqa: E731
    copies = r.of_type("command:remote:CopyToRemote")
    assert sorted(c.name for c in copies) == [name(m, "copy") for m in MEMBERS]
    for m in MEMBERS:
        for other in MEMBERS:            # no member restores before every member stopped
            assert r.depends(name(m, "data"), name(other, "stop"))
            assert r.depends(name(m, "start"), name(other, "data"))
            assert r.depends(name(m, "finish"), name(other, "start"))
        assert r.depends(name(m, "stop"), name("master-01", "apiserver-stop"))
        assert "PART=data" in r.by_name(name(m, "data")).inputs["delete"]          # undone if abandoned
        assert "PART=stop" in r.by_name(name(m, "stop")).inputs["delete"]
        copy = r.by_name(name(m, "copy"))
        assert copy.inputs["remotePath"].startswith("/var/lib/hakube/upload/")   # a 0700 dir: not world-readable
        assert r.depends(copy.name, name(m, "upload-dir"))
        assert f"RESTORE_TOKEN=hakube-dev-restore-{sha[:8]}" in r.by_name(name(m, "data")).inputs["create"]
    assert r.depends(name("etcd-01", "stop"), step("etcd-03", "restart"))      # after the cluster settled
    for cp in ("master-01", "master-02", "master-03"):
        assert r.depends(name(cp, "apiserver-start"), name("etcd-02", "finish"))
    # practice mode has no apiservers to pause
    raw = raw_from_stack_file(ROOT / "Pulumi.cka.yaml")
    raw["etcd"] = {"restore": {"snapshot": str(snap)}}
    cka = run_program("cka", raw, EchoMocks())
    assert not [x for x in cka.registrations if "apiserver" in x.name and "restore" in x.name]


def test_a_rotation_label_reissues_leaf_certs_and_restarts_one_at_a_time():
    def commands(run_):
        return {r.name: unwrap({k: v for k, v in r.inputs.items() if k != "connection"})
                for r in run_.of_type(CMD)}
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    before = commands(run_program("dev", raw, EchoMocks()))
    raw["pki"] = {"rotation": "2026-11"}
    rotated = run_program("dev", raw, EchoMocks())
    after = commands(rotated)
    changed = sorted(n for n in before if before[n] != after[n])
    cps = ("master-01", "master-02", "master-03")
    assert changed == sorted([step(m, s) for m in MEMBERS for s in ("certs", "restart")]
                             + [f"hakube-cp-{c}-{s}" for c in cps for s in ("etcd-certs", "apiserver-restart")])
    for a, b in zip(cps, cps[1:]):
        assert rotated.depends(f"hakube-cp-{b}-apiserver-restart", f"hakube-cp-{a}-apiserver-restart")
    assert "crictl stop" in rotated.by_name("hakube-cp-master-02-apiserver-restart").inputs["update"]
    for reg in rotated.of_type("tls:index/certRequest:CertRequest"):
        assert unwrap(reg.inputs["subject"])["organizationalUnit"] == "rotation 2026-11"
    for reg in rotated.of_type("tls:index/selfSignedCert:SelfSignedCert"):
        assert "organizationalUnit" not in unwrap(reg.inputs["subject"])       # CAs stay
