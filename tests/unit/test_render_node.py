"""cloud-init payloads of every node of every stack, checked by the real
cloud-init: `cloud-init schema` for user-data, cloud-init's own v2 parser and
networkd renderer (`cloud-init devel net-convert`) for network-config."""
import shutil
import subprocess

import pytest
import yaml

from components import cloudinit
from config import load_stack_file
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("cloud-init") is None,
                                reason="Debian's cloud-init is needed (.ci/run installs it)")

STACKS = ["dev", "cka", "minimal", "lab"]
FAKE_HOST_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def nodes():
    for stack in STACKS:
        spec = load_stack_file(ROOT, stack)
        for node in spec.topology.nodes:
            yield pytest.param(spec, node, id=f"{stack}-{node.name}")


@pytest.mark.parametrize("spec,node", list(nodes()))
def test_user_data_passes_cloud_init_schema(spec, node, tmp_path):
    text = cloudinit.user_data(spec, node, authorized_keys=["ssh-ed25519 AAAAC3Nza admin"],
                               host_key_private=FAKE_HOST_KEY, host_key_public="ssh-ed25519 AAAAC3Nzb host")
    path = tmp_path / "user-data"
    path.write_text(text)
    res = subprocess.run(["cloud-init", "schema", "-c", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = yaml.safe_load(text)
    assert doc["hostname"] == node.name
    assert doc["ssh_pwauth"] is False and doc["disable_root"] is True
    assert doc["users"][0]["lock_passwd"] is True


@pytest.mark.parametrize("spec,node", list(nodes()))
def test_network_config_is_parsed_and_rendered_by_cloud_init(spec, node, tmp_path):
    src = tmp_path / "network-config"
    src.write_text(cloudinit.network_config(spec, node))
    out = tmp_path / "out"
    res = subprocess.run(["cloud-init", "devel", "net-convert", "-p", str(src), "-k", "yaml",
                          "-d", str(out), "-D", "debian", "-O", "networkd"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    rendered = "\n".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert f"MACAddress={node.mac}" in rendered
    assert f"Address={node.ip}/24" in rendered
    assert f"Gateway={spec.network.gateway}" in rendered
    # the VIP is keepalived's to place, for one load balancer as for two
    assert f"Address={spec.kubernetes.vip}/24" not in rendered


def test_a_node_does_not_wait_for_a_router_advertisement(tmp_path):
    """Rendered for netplan (Ubuntu's images), the interface accepts no RA,
    so systemd-networkd-wait-online does not hold the boot for one (12 s
    measured in the lab where none comes)."""
    spec = load_stack_file(ROOT, "dev")
    src = tmp_path / "network-config"
    src.write_text(cloudinit.network_config(spec, spec.topology.nodes[0]))
    res = subprocess.run(["cloud-init", "devel", "net-convert", "-p", str(src), "-k", "yaml",
                          "-d", str(tmp_path / "out"), "-D", "ubuntu", "-O", "netplan"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    plan = yaml.safe_load(next(p for p in (tmp_path / "out").rglob("*.yaml")).read_text())
    assert plan["network"]["ethernets"]["primary"]["accept-ra"] is False


def test_every_node_can_resolve_every_other_by_name():
    spec = load_stack_file(ROOT, "cka")
    hosts = cloudinit.hosts_file(spec)
    for node in spec.topology.nodes:
        assert f"{node.ip} {node.fqdn} {node.name}" in hosts


@pytest.mark.parametrize("count", [1, 2])
def test_every_load_balancer_gets_keepalived_and_no_static_vip(count):
    from config import load, raw_from_stack_file
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["nodes"]["loadBalancer"]["count"] = count
    spec = load(raw, "dev")
    lb = spec.topology.load_balancers[0]
    assert "keepalived" in cloudinit.packages(lb)
    assert cloudinit.addresses(spec, lb) == [f"{lb.ip}/24"]


def test_user_data_names_no_other_node():
    """/etc/hosts reaches nodes by their hosts step: a node-set change must
    not change a running node's user-data (its cloud-init disk)."""
    from config import load, raw_from_stack_file
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    small = load(raw, "dev")
    raw["nodes"]["etcd"] = {**raw["nodes"].get("etcd", {}), "count": 5}
    big = load(raw, "dev")
    node = small.topology.node("etcd-01")
    kw = dict(authorized_keys=["ssh-ed25519 AAAA"], host_key_private="k", host_key_public="p")
    assert cloudinit.user_data(small, node, **kw) == cloudinit.user_data(big, big.topology.node("etcd-01"), **kw)
    assert cloudinit.network_config(small, node) == cloudinit.network_config(big, big.topology.node("etcd-01"))
