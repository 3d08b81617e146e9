"""Pure renderers of what lands on an etcd member: its config file, the
certificate bundle layout, the firewall ruleset and the etcdctl environment."""
from __future__ import annotations

import string
from typing import Mapping, Sequence

import yaml

from config.spec import EtcdSpec, MonitoringSpec, OffsiteSpec
from components.remote import prelude
from components.steps import pem_bundle
from config.topology import ETCD_CLIENT_PORT, ETCD_PEER_PORT, NodeSpec, Topology

PKI_DIR = "/etc/etcd/pki"
CONFIG_FILE = "/etc/etcd/etcd.conf.yml"
# The configured membership, for steps and jobs that gate on it (lib.sh reads
# it when not handed the values): their own text stays the same when the
# membership changes.
CLUSTER_FILE = "/etc/etcd/hakube-cluster.env"
METRICS_PORT = 2381

# What the certs step writes, in the order the PEM bundle on stdin carries
# them: (path, mode, owner, group).
CERT_FILES = tuple((f"{PKI_DIR}/{name}", mode, owner, owner) for name, mode, owner in (
    ("ca.crt", "0644", "etcd"),
    ("peer-ca.crt", "0644", "etcd"),
    ("server.crt", "0644", "etcd"),
    ("server.key", "0600", "etcd"),
    ("peer.crt", "0644", "etcd"),
    ("peer.key", "0600", "etcd"),
    ("healthcheck-client.crt", "0644", "root"),
    ("healthcheck-client.key", "0600", "root"),
))

# kubeadm's paths for an external etcd's client certs on a control plane.
KUBEADM_ETCD_CA = "/etc/kubernetes/pki/etcd/ca.crt"
KUBEADM_ETCD_CERT = "/etc/kubernetes/pki/apiserver-etcd-client.crt"
KUBEADM_ETCD_KEY = "/etc/kubernetes/pki/apiserver-etcd-client.key"


def _transport_security(pki_dir: str) -> dict:
    """Mutual TLS on both ports: clients by the etcd CA, peers by the peer CA."""
    return {
        "client-transport-security": {
            "cert-file": f"{pki_dir}/server.crt",
            "key-file": f"{pki_dir}/server.key",
            "trusted-ca-file": f"{pki_dir}/ca.crt",
            "client-cert-auth": True,
            "auto-tls": False,
        },
        "peer-transport-security": {
            "cert-file": f"{pki_dir}/peer.crt",
            "key-file": f"{pki_dir}/peer.key",
            # Peers trust only the peer CA: no client cert is a peer.
            "trusted-ca-file": f"{pki_dir}/peer-ca.crt",
            "client-cert-auth": True,
            "auto-tls": False,
        },
    }


def etcd_config(spec: EtcdSpec, topology: Topology, node: NodeSpec, *,
                pki_dir: str = PKI_DIR, data_dir: str | None = None,
                state: str = "new", membership: bool = True, metrics_port: int | None = None) -> dict:
    """etcd's YAML config file (the keys of `etcd --config-file`).

    `initial-cluster` lists every configured member with state `new`: what a
    bootstrapping member needs. A member joining a running cluster starts from
    a copy with the live membership and state `existing` (start.sh); a member
    with data ignores both. `membership=False` leaves them out (what a
    running member's restart depends on)."""
    tls = _transport_security(pki_dir)
    cfg = {
        "name": node.name,
        "data-dir": data_dir or spec.data_dir,
        "listen-peer-urls": node.peer_url,
        "listen-client-urls": f"{node.client_url},https://127.0.0.1:{ETCD_CLIENT_PORT}",
        "advertise-client-urls": node.client_url,
        "initial-advertise-peer-urls": node.peer_url,
        "initial-cluster": topology.etcd_initial_cluster,
        "initial-cluster-state": state,
        "initial-cluster-token": spec.cluster_token,
        # Plain-HTTP metrics and /health on loopback, for local probes; on the
        # node's address too for Prometheus (monitoring.sources: the firewall
        # admits only those).
        "listen-metrics-urls": f"http://127.0.0.1:{METRICS_PORT}"
                               + (f",http://{node.ip}:{metrics_port}" if metrics_port else ""),
        "heartbeat-interval": spec.heartbeat_interval_ms,
        "election-timeout": spec.election_timeout_ms,
        "quota-backend-bytes": spec.quota_backend_bytes,
        "snapshot-count": spec.snapshot_count,
        "auto-compaction-mode": spec.auto_compaction_mode,
        "auto-compaction-retention": spec.auto_compaction_retention,
        "logger": "zap",
        "log-outputs": ["stderr"],
        # Only AEAD suites: none exists below TLS 1.2, so this also sets the
        # floor on 3.4/3.5, which have no tls-min-version.
        "cipher-suites": list(spec.cipher_suites),
        **tls,
    }
    if not membership:
        for key in ("initial-cluster", "initial-cluster-state", "initial-cluster-token"):
            del cfg[key]
    if spec.minor >= 6:
        cfg["tls-min-version"] = "TLS1.2"
    return cfg


def etcd_config_yaml(spec: EtcdSpec, topology: Topology, node: NodeSpec, **kw) -> str:
    return "# Managed by hakube: changes are overwritten by `pulumi up`.\n" + yaml.safe_dump(
        etcd_config(spec, topology, node, **kw), sort_keys=False)


def cert_bundle(pems: Sequence[str]) -> str:
    """The PEM blocks in CERT_FILES order, one after another (stdin of the certs step)."""
    if len(pems) != len(CERT_FILES):
        raise ValueError(f"expected {len(CERT_FILES)} PEM blocks, got {len(pems)}")
    return pem_bundle(pems, [f[0] for f in CERT_FILES])


def firewall_ruleset(topology: Topology, node: NodeSpec, monitoring: MonitoringSpec = MonitoringSpec()) -> str:
    """nftables rules for an etcd member, in a table of its own: clients on
    2379 only from control planes, members and itself; peers on 2380 only
    from members (the seed's port table); with monitoring, its metrics port
    only from monitoring.sources. Everything else is left alone."""
    members = sorted(str(n.ip) for n in topology.etcd)
    clients = sorted({str(n.ip) for n in topology.control_planes} | set(members))
    metrics = ""
    if monitoring.enabled:
        port = monitoring.etcd_port
        metrics = (f"  set monitoring {{ type ipv4_addr; flags interval; elements = {{ "
                   f"{', '.join(monitoring.sources)} }} }}\n")
        metrics_rules = (f"    tcp dport {port} ip saddr @monitoring accept\n"
                         f"    tcp dport {port} counter drop\n")
    else:
        metrics_rules = ""
    return f"""\
# Managed by hakube: etcd access rules for {node.name}.
table inet hakube_etcd
delete table inet hakube_etcd
table inet hakube_etcd {{
  set etcd_clients {{ type ipv4_addr; elements = {{ {", ".join(clients)} }} }}
  set etcd_peers {{ type ipv4_addr; elements = {{ {", ".join(members)} }} }}
{metrics}  chain input {{
    type filter hook input priority filter - 5; policy accept;
    iifname "lo" accept
    tcp dport {ETCD_CLIENT_PORT} ip saddr @etcd_clients accept
    tcp dport {ETCD_PEER_PORT} ip saddr @etcd_peers accept
    tcp dport {{ {ETCD_CLIENT_PORT}, {ETCD_PEER_PORT} }} counter drop
{metrics_rules}  }}
}}
"""


def cluster_env(topology: Topology) -> str:
    """CLUSTER_FILE: the configured membership as shell assignments."""
    body = prelude({"ETCD_INITIAL_CLUSTER": topology.etcd_initial_cluster,
                    "ETCD_ENDPOINTS": ",".join(topology.etcd_client_endpoints)})
    return "# written by hakube: the configured etcd membership\n" + body.split("\n", 1)[1]


def etcdctl_env(topology: Topology) -> str:
    """A snippet to paste on a control plane: etcdctl with kubeadm's client cert."""
    return (
        "export ETCDCTL_API=3\n"
        f"export ETCDCTL_ENDPOINTS={','.join(topology.etcd_client_endpoints)}\n"
        f"export ETCDCTL_CACERT={KUBEADM_ETCD_CA}\n"
        f"export ETCDCTL_CERT={KUBEADM_ETCD_CERT}\n"
        f"export ETCDCTL_KEY={KUBEADM_ETCD_KEY}\n"
    )


def etcd_unit(spec: EtcdSpec, template: str) -> str:
    """etcd.service with the member's tuning (hakube:etcd.tuning): its I/O
    class and priority, and Nice= only when set (the defaults render the
    unit every member has run with, so they restart nobody)."""
    t = spec.tuning
    return string.Template(template).substitute(
        io_class=t.io_class, io_priority=t.io_priority, nice=f"Nice={t.nice}\n" if t.nice else "")


OFFSITE_DIR = "/etc/hakube/offsite"     # rclone's config and the pinned host keys (root only)


def offsite_url(offsite: OffsiteSpec) -> str:
    """Where the off-host copies go, for people (messages, outputs, status)."""
    o = dict(offsite.remote)
    if o.get("host"):
        user = f"{o['user']}@" if o.get("user") else ""
        port = f":{o['port']}" if o.get("port") else ""
        return f"{o['type']}://{user}{o['host']}{port}/{offsite.path}"
    return f"{o['type']}:{offsite.path}"


def offsite_values(offsite: OffsiteSpec | None) -> dict:
    """What the backup job and the off-host steps need (none of it secret).
    Nothing without off-host copies: the job's text, and so every stack that
    has none, stays as it was."""
    if offsite is None:
        return {}
    return {"OFFSITE": 1, "OFFSITE_DIR": OFFSITE_DIR, "OFFSITE_PATH": offsite.path,
            "OFFSITE_URL": offsite_url(offsite), "OFFSITE_RETENTION": offsite.retention}


def rclone_config(offsite: OffsiteSpec, secrets: Mapping[str, str]) -> str:
    """The stdin of a member's offsite step: rclone's config of the remote
    `offsite` (its options, then the secret ones), and behind a
    `#=== known_hosts` line the pinned host keys, which an sftp remote is
    made to check (known_hosts_file)."""
    options = dict(offsite.remote)
    clash = sorted(set(options) & set(secrets))
    if clash:
        raise ValueError(f"rclone option(s) {', '.join(clash)} set both in etcd.backup.offsite.remote "
                         "and in the secret hakube:etcdOffsiteSecrets: keep each in one place")
    if offsite.known_hosts and options["type"] == "sftp":
        options["known_hosts_file"] = f"{OFFSITE_DIR}/known_hosts"
    lines = ["# written by hakube (etcd.backup.offsite): the remote off-host snapshots go to", "[offsite]"]
    ordered = [("type", options.pop("type")), *options.items()]        # type first, as rclone writes it
    lines += [f"{k} = {v}" for k, v in ordered] + [f"{k} = {v}" for k, v in sorted(secrets.items())]
    return "\n".join(lines) + "\n#=== known_hosts\n" + offsite.known_hosts
