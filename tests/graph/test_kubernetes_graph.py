"""The load balancer, control plane and worker steps under Pulumi's mocks:
init once, joins one at a time with freshly minted secret credentials, the
etcd preflight before kubeadm, secrets kept secret, practice mode."""
import pytest
import yaml

from config import raw_from_stack_file
from tests.conftest import ROOT
from tests.graph.mocks import KEY_MARK, SHARED_MARK, TOKEN_MARK, EchoMocks
from tests.harness import is_secret, run_program, unwrap

CMD = "command:remote:Command"


def run(stack: str, **overrides):
    raw = raw_from_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value}
    return run_program(stack, raw, EchoMocks())


@pytest.fixture(scope="module")
def dev():
    # dev with one worker, so worker joins are in the graph too
    return run("dev", nodes={"workers": {"count": 1}})


@pytest.fixture(scope="module")
def cka():
    return run("cka")


def cp(node, step):
    return f"hakube-cp-{node}-{step}"


def test_init_runs_once_on_the_first_control_plane(dev):
    inits = [r for r in dev.of_type(CMD) if r.name.endswith("kubeadm-init")]
    assert [r.name for r in inits] == [cp("master-01", "kubeadm-init")]
    assert unwrap(inits[0].inputs["connection"])["host"] == "192.168.144.101"
    script = inits[0].inputs["create"]
    assert "admin.conf" in script                                  # a second up does not re-init
    assert "--upload-certs" not in script       # nothing uploaded that expires: joiners get the shared certs


def test_preflight_gates_init_and_every_join(dev):
    assert dev.depends(cp("master-01", "kubeadm-init"), cp("master-01", "etcd-preflight"))
    assert dev.depends(cp("master-01", "etcd-preflight"), "hakube-etcd-health")
    for n in ("master-02", "master-03"):
        assert dev.depends(cp(n, "kubeadm-join"), cp(n, "etcd-preflight"))
    assert dev.depends(cp("master-01", "kubeadm-init"), "hakube-lb-vip")


def test_joins_are_strictly_serial_each_with_its_own_token_deleted_after_it(dev):
    order = [cp("master-02", "kubeadm-join"), cp("master-01", "join-done-master-02"),
             cp("master-03", "kubeadm-join"), cp("master-01", "join-done-master-03"),
             "hakube-workers-worker-01-kubeadm-join", "hakube-workers-master-01-join-done-worker-01"]
    for earlier, later in zip(order, order[1:]):
        assert dev.depends(later, earlier), f"{later} must wait for {earlier}"
        assert not dev.depends(earlier, later)
    # master-03's token is minted after master-02's token is deleted
    assert dev.depends(cp("master-01", "join-token-master-03"), cp("master-01", "join-done-master-02"))
    assert dev.depends(cp("master-03", "kubeadm-join"), cp("master-01", "join-token-master-03"))


def test_join_tokens_are_secret_per_join_and_carry_no_certificate_key(dev):
    tokens = [r for r in dev.of_type(CMD) if "-join-token-" in r.name]
    assert len(tokens) == 3                                   # master-02, master-03, worker-01
    for r in tokens:
        assert "stdout" in r.options["additional_secret_outputs"]
        assert r.inputs["logging"] == "none"
        assert unwrap(r.inputs["connection"])["host"] == "192.168.144.101"
        # a node that leaves before it joined takes its token with it
        assert "kubernetes/join-done.sh" in unwrap(r.inputs["delete"])
    joins = {r.name: r for r in dev.of_type(CMD) if r.name.endswith("kubeadm-join")}
    seen = set()
    for name, r in joins.items():
        assert is_secret(r.inputs["stdin"]) and r.inputs["logging"] == "none", name
        docs = list(yaml.safe_load_all(unwrap(r.inputs["stdin"])))
        join_cfg = next(d for d in docs if d["kind"] == "JoinConfiguration")
        token = join_cfg["discovery"]["bootstrapToken"]["token"]
        assert token.startswith(TOKEN_MARK)
        seen.add(token)
        assert TOKEN_MARK not in r.inputs["create"]
        if "worker" in name:
            assert "controlPlane" not in join_cfg
        else:
            assert set(join_cfg["controlPlane"]) == {"localAPIEndpoint"}
            assert join_cfg["controlPlane"]["localAPIEndpoint"]["advertiseAddress"].startswith("192.168.144.10")
    assert len(seen) == 3                                     # one token per join


def test_joining_control_planes_get_the_shared_certs_by_stdin_only(dev):
    export = dev.by_name(cp("master-01", "export-shared-certs"))
    assert "stdout" in export.options["additional_secret_outputs"] and export.inputs["logging"] == "none"
    assert dev.depends(export.name, cp("master-01", "kubeadm-init"))
    for n in ("master-02", "master-03"):
        r = dev.by_name(cp(n, "shared-certs"))
        assert is_secret(r.inputs["stdin"]) and r.inputs["logging"] == "none"
        assert SHARED_MARK in unwrap(r.inputs["stdin"]) and SHARED_MARK not in r.inputs["create"]
        assert "/etc/kubernetes/pki/ca.key:0600" in r.inputs["create"]
        assert dev.depends(cp(n, "kubeadm-join"), r.name)
    assert not [r for r in dev.of_type(CMD) if r.name.startswith("hakube-workers") and "shared-certs" in r.name]


def test_kubeconfig_is_a_secret_output(dev):
    assert is_secret(dev.outputs["kubeconfig"])
    step = dev.by_name(cp("master-01", "kubeconfig"))
    assert "stdout" in step.options["additional_secret_outputs"] and step.inputs["logging"] == "none"


def test_etcd_client_key_reaches_control_planes_only_by_stdin(dev):
    for n in ("master-01", "master-02", "master-03"):
        r = dev.by_name(cp(n, "etcd-certs"))
        assert is_secret(r.inputs["stdin"]) and r.inputs["logging"] == "none"
        assert KEY_MARK in unwrap(r.inputs["stdin"])
        assert "/etc/kubernetes/pki/apiserver-etcd-client.key:0600" in r.inputs["create"]
        assert "/root/certs" not in r.inputs["create"]        # bootstrap mode: no exam files


def test_checks_follow_every_join_and_look_in_etcd(dev):
    assert dev.depends("hakube-checks-master-01-nodes-ready", "hakube-workers-worker-01-kubeadm-join")
    assert dev.depends("hakube-checks-master-01-nodes-ready", cp("master-01", "cni"))
    reg = dev.by_name("hakube-checks-etcd-01-registry")
    assert unwrap(reg.inputs["connection"])["host"] == "192.168.144.201"
    assert dev.depends(reg.name, "hakube-checks-master-01-no-local-etcd")


def test_practice_mode_registers_no_kubeadm_run(cka):
    names = [r.name for r in cka.of_type(CMD)]
    assert not [n for n in names if "kubeadm-init" in n or "kubeadm-join" in n or "join-token" in n]
    assert not [n for n in names if n.startswith("hakube-checks")]
    assert "kubeconfig" not in cka.outputs
    steps = unwrap(cka.outputs["nextSteps"])
    assert any("kubeadm init --config /root/kubeadm.yaml --upload-certs" in s for s in steps)
    # the upgrade procedure hakube's upgrade steps run, node by node, for the learner
    upgrades = [s for s in steps if "kubeadm upgrade" in s]
    assert [s.split(":")[0] for s in upgrades] == ["on master-01", "on master-02"]   # the cka stack's two
    assert "kubeadm upgrade apply v" in upgrades[0] and "kubeadm upgrade node" in upgrades[1]
    config = cka.by_name("hakube-cp-master-01-kubeadm-config")
    assert "/root/kubeadm.yaml" in config.inputs["create"]
    certs = cka.by_name("hakube-cp-master-01-etcd-certs")
    for f in ("/root/certs/ca.pem", "/root/certs/client.crt", "/root/certs/client.key:0600"):
        assert f in certs.inputs["create"]


def test_haproxy_routes_to_every_control_plane(dev):
    cfg = dev.by_name("hakube-lb-lb-01-haproxy").inputs["stdin"]
    for ip in ("192.168.144.101", "192.168.144.102", "192.168.144.103"):
        assert f"{ip}:6443 check" in cfg
    assert "bind 192.168.144.100:6443" in cfg


@pytest.mark.parametrize("count", [1, 2])
def test_keepalived_holds_the_vip_for_any_count_with_a_secret_config(count):
    r = run("dev", nodes={"loadBalancer": {"count": count}})
    kas = [x for x in r.of_type(CMD) if x.name.endswith("keepalived")]
    assert [x.name for x in kas] == [f"hakube-lb-lb-0{i}-keepalived" for i in range(1, count + 1)]
    for x in kas:
        assert is_secret(x.inputs["stdin"]) and x.inputs["logging"] == "none"
        assert "auth_pass" in unwrap(x.inputs["stdin"])
        assert r.depends("hakube-lb-vip", x.name)
    if count == 2:        # the second starts under a master it hears
        assert r.depends("hakube-lb-lb-02-keepalived", "hakube-lb-lb-01-keepalived")
    # a single one sends its adverts to where the second one goes
    assert "        192.168.144.92\n" in unwrap(kas[0].inputs["stdin"])


def test_apiservers_and_kubeadm_config_follow_the_etcd_membership(dev):
    """3 -> 5: every apiserver's restart trigger changes and its update
    rewrites --etcd-servers to the five; restarts stay one at a time; kubeadm's
    ClusterConfiguration is re-uploaded after the last one; the membership
    step (which removes members) waits for all of it."""
    five = run("dev", nodes={"workers": {"count": 1}, "etcd": {"count": 5}})
    servers = ",".join(f"https://192.168.144.20{i}:2379" for i in range(1, 6))
    for node in ("master-01", "master-02", "master-03"):
        before, after = dev.by_name(cp(node, "apiserver-restart")), five.by_name(cp(node, "apiserver-restart"))
        assert unwrap(before.inputs["update"]) != unwrap(after.inputs["update"]), node
        assert f"ETCD_ENDPOINTS={servers}" in after.inputs["update"] and "--etcd-servers=" in after.inputs["update"]
    assert five.depends(cp("master-02", "apiserver-restart"), cp("master-01", "apiserver-restart"))
    assert five.depends(cp("master-03", "apiserver-restart"), cp("master-02", "apiserver-restart"))
    upload = five.by_name(cp("master-01", "kubeadm-config-upload"))
    assert "kubeadm init phase upload-config kubeadm --config" in upload.inputs["create"] and servers in \
        upload.inputs["create"]
    assert five.depends(upload.name, cp("master-03", "apiserver-restart"))
    assert five.depends("hakube-etcd-membership", upload.name)


def test_control_plane_etcdctl_waits_for_the_members_upgrade_check(dev):
    for node in ("master-01", "master-02"):
        for member in ("etcd-01", "etcd-02", "etcd-03"):
            assert dev.depends(cp(node, "etcdctl"), f"hakube-etcd-{member}-install")


def test_kubeadm_certificates_are_renewed_by_a_timer_on_each_control_plane(dev, cka):
    """Bootstrap mode: each control plane installs the renewal job (its
    script on stdin, its place in the order in it); practice mode leaves
    kubeadm, and so its certificates, to the learner."""
    for i, n in enumerate(("master-01", "master-02", "master-03")):
        r = dev.by_name(cp(n, "kubeadm-certs-renewal"))
        assert "JOB=hakube-kubeadm-certs-renew" in r.inputs["create"]
        assert f"DELAY_SECONDS={600 * i}" in unwrap(r.inputs["stdin"])
    assert not [r for r in cka.of_type(CMD) if "kubeadm-certs-renewal" in r.name]


def test_encryption_keys_are_in_place_before_kubeadm_and_only_ever_on_stdin(dev, cka):
    for n in ("master-01", "master-02", "master-03"):
        r = dev.by_name(cp(n, "encryption-config"))
        assert is_secret(r.inputs["stdin"]) and r.inputs["logging"] == "none"
        keys = unwrap(r.inputs["stdin"]).split()
        assert keys[0] == "key1" and len(keys) == 2 and keys[1] not in r.inputs["create"]
        kubeadm = cp(n, "kubeadm-init") if n == "master-01" else cp(n, "kubeadm-join")
        assert dev.depends(kubeadm, r.name)
    seed = dev.by_name("hakube-cp-encryption-seed")
    assert seed.type == "tls:index/privateKey:PrivateKey"
    assert {"privateKeyPem", "privateKeyOpenssh"} <= set(seed.options["additional_secret_outputs"]) or \
        {"private_key_pem", "private_key_openssh"} <= set(seed.options["additional_secret_outputs"])
    # the rewrite after the last apiserver uses the active key; the etcd membership waits for it all
    assert dev.depends(cp("master-01", "encryption-rewrite"), cp("master-03", "encryption-use"))
    assert dev.depends(cp("master-01", "kubeadm-config-upload"), cp("master-01", "encryption-rewrite"))
    assert not [r for r in cka.of_type(CMD) if "encryption" in r.name]


def test_audit_policy_is_on_every_control_plane_before_kubeadm_when_enabled(dev):
    assert not [r for r in dev.of_type(CMD) if "audit-policy" in r.name]          # off by default
    on = run("dev", kubernetes={"audit": {"enabled": True}})
    for n in ("master-01", "master-02", "master-03"):
        r = on.by_name(cp(n, "audit-policy"))
        assert "/etc/kubernetes/hakube-audit/policy.yaml" in r.inputs["create"]
        assert "kind: Policy" in r.inputs["stdin"]
        assert on.depends(cp(n, "kubeadm-init") if n == "master-01" else cp(n, "kubeadm-join"), r.name)
