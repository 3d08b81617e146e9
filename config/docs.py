"""The stack config reference, rendered into Pulumi.yaml and docs/config.md.

Only the words live here: what a key is for. Its kind, default, range and
choices are the parser's own (config/reader.py records each key as
config.spec.load reads it), so a default or a limit is written once, where
it is enforced. `make docs` (ops/docs.py) writes both copies;
tests/unit/test_docs.py keeps them current and holds this table to the keys
the parser reads, both ways."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import versions
from .reader import ConfigError, KeyFact, recording

ROOT = Path(__file__).resolve().parents[1]
ROLE_NAMES = ("loadBalancer", "etcd", "controlPlane", "workers")


@dataclass(frozen=True)
class Doc:
    text: str
    default: str = ""        # words for a default the parser computes from other keys


def _range(minors, major: int) -> str:
    return f"{major}.{min(minors)}-{major}.{max(minors)}"


K8S_MINORS = sorted(versions.KUBERNETES)
ETCD_MINORS = sorted(versions.ETCD_LINES)

# Top-level sections and their keys, in the order the reference shows them.
# `nodes.<role>.key`: the same key for each role (ROLE_NAMES).
KEYS: dict[str, Doc | str] = {
    "libvirt": "the libvirt host every VM, volume and network is made on",
    "libvirt.uri": "libvirt connection URI (`make check-libvirt` tries it)",
    "libvirt.pool": "storage pool for every volume",
    "network": "the nodes' network",
    "network.mode": "nat: hakube creates the network; bridge: the nodes sit on an existing host bridge",
    "network.cidr": "the node subnet, at least a /24, one per stack (required)",
    "network.gateway": Doc("the nodes' default gateway", "the first host of cidr"),
    "network.dns": Doc("the nodes' resolvers", "the gateway"),
    "network.domain": "DNS domain of the nodes",
    "network.bridge": Doc("the host bridge (mode bridge)", "one named after the stack"),
    "image": "the cloud image every node boots",
    "image.url": Doc("an http(s) cloud image; or set path", "Ubuntu 24.04 cloud image"),
    "image.path": "instead: an absolute path on the libvirt host",
    "image.format": "the image's format",
    "image.packageUpdate": "apt-get update on first boot",
    "ssh": "how hakube and you log in to every node",
    "ssh.user": "the admin login on every node (not root)",
    "ssh.publicKey": Doc("your OpenSSH public key; then set the secret sshPrivateKey to its pair (checked before "
                         "anything uses it). Rotation: set the new pair and, for one run, sshPreviousPrivateKey "
                         "(README)", "hakube makes an ED25519 key: stack output sshPrivateKey"),
    "nodes": "the VMs of each role: loadBalancer, etcd, controlPlane, workers",
    "nodes.<role>": "one role's VMs",
    "nodes.<role>.count": "how many. etcd: odd; a change on a running cluster adds members as learners (then "
                          "promoted) or removes them (`member remove`) before their VMs go, and removing more "
                          "than the live cluster can lose in one run is refused. loadBalancer 2: keepalived "
                          "floats the VIP",
    "nodes.<role>.vcpu": "vCPUs of each VM (controlPlane: kubeadm's preflight wants 2)",
    "nodes.<role>.memoryMiB": "memory of each VM (controlPlane: kubeadm's preflight wants 1700)",
    "nodes.<role>.diskGiB": "root disk of each VM; a change waits for `make rebuild` node by node",
    "nodes.<role>.namePrefix": "node names: <prefix>-01, <prefix>-02, ...",
    "nodes.<role>.ips": Doc("explicit addresses, one per node",
                            "loadBalancer .91+, controlPlane .101+, workers .151+, etcd .201+ of cidr"),
    "kubernetes": "the cluster kubeadm makes on the external etcd",
    "kubernetes.version": f"Kubernetes release ({_range(K8S_MINORS, 1)}: kubeadm v1beta3 before 1.31, v1beta4 "
                          "from 1.31; `make versions`); a change upgrades one node at a time, a skipped minor "
                          "or a downgrade is refused",
    "kubernetes.bootstrap": "run kubeadm; false: practice mode, every node ready for a learner to run it",
    "kubernetes.vip": Doc("the API's virtual IP, held by keepalived on the load balancers", ".100 of cidr"),
    "kubernetes.apiServerPort": "the API's port on the VIP and on each control plane",
    "kubernetes.podSubnet": "the pod network (the CNI's too)",
    "kubernetes.serviceSubnet": "the service network",
    "kubernetes.cni": "the pod network plugin",
    "kubernetes.cni.plugin": "which one",
    "kubernetes.cni.version": Doc("its release", ", ".join(f"{p} {v}" for p, (v, _) in versions.CNI.items())),
    "kubernetes.cni.manifestUrl": Doc("where its manifest is fetched from: a mirror, or a file served inside an "
                                      "air-gapped network (the pod subnet is still set in it)",
                                      "the plugin's release"),
    "kubernetes.certRenewal": "renewal of kubeadm's certificates",
    "kubernetes.certRenewal.enabled": "a timer on each control plane renews them",
    "kubernetes.certRenewal.days": "... when one of them expires within this many days",
    "kubernetes.certRenewal.calendar": "when the timer fires (systemd OnCalendar=); control planes then go "
                                       "10 minutes apart, in order",
    "kubernetes.encryption": "Secrets encrypted at rest in etcd",
    "kubernetes.encryption.enabled": "on (set when the cluster is made)",
    "kubernetes.encryption.provider": "the apiserver's encryption provider",
    "kubernetes.encryption.keys": "key names, the active one first; each key is derived from a random key in "
                                  "the stack's state. Rotate: put a new name first (one `pulumi up`: added, "
                                  "used, every Secret rewritten), then drop the old one in a later run",
    "kubernetes.audit": "the apiserver's audit log, /var/log/kubernetes/audit",
    "kubernetes.audit.enabled": "on",
    "kubernetes.audit.maxAgeDays": "days a rotated log is kept",
    "kubernetes.audit.maxBackups": "rotated logs kept",
    "kubernetes.audit.maxSizeMB": "size at which the log rotates",
    "kubernetes.packageRepository": "Kubernetes package repository base (a mirror)",
    "kubernetes.imageRepository": Doc("the registry (and path) kubeadm pulls the control plane's images from, "
                                      "no scheme, e.g. registry.example.internal:5000/k8s",
                                      "kubeadm's own: registry.k8s.io"),
    "kubernetes.allowCgroupV1": "let kubelet run on nodes booted with cgroup v1 (failCgroupV1: false, and "
                                "kubeadm's SystemVerification skipped on those nodes only); kubelet 1.35+ "
                                "refuses v1 otherwise, and hakube stops before kubeadm on such a node, naming "
                                "this key. Read when the cluster is made and when a node joins",
    "kubernetes.kubeProxy": "kube-proxy's settings kubeadm writes at init (later: edit its ConfigMap)",
    "kubernetes.kubeProxy.conntrackMaxPerCore": Doc("conntrack.maxPerCore; 0 leaves the node's "
                                                    "nf_conntrack_max alone (a container host)",
                                                    "kube-proxy's own: 32768"),
    "etcd": "the external etcd cluster",
    "etcd.version": f"etcd release ({_range(ETCD_MINORS, 3)}; `make versions` lists those whose "
                    "sha256 hakube pins); a change upgrades members one at a time, and the running cluster "
                    "refuses a skipped minor or a downgrade before anything changes",
    "etcd.allowEndOfLife": "accept an end-of-life etcd minor, to keep running it until its upgrade",
    "etcd.downloadUrl": "base URL holding v<version>/etcd-v<version>-linux-<arch>.tar.gz and SHA256SUMS",
    "etcd.sha256": Doc("pin the tarball's checksum", "hakube's pin, else the release's SHA256SUMS"),
    "etcd.arch": "the nodes' architecture",
    "etcd.clusterToken": Doc("etcd's initial cluster token", "hakube-<stack>"),
    "etcd.heartbeatIntervalMs": "etcd's heartbeat interval",
    "etcd.electionTimeoutMs": "etcd's election timeout (at least 5 heartbeats)",
    "etcd.quotaBackendBytes": "the database size past which etcd raises NOSPACE",
    "etcd.snapshotCount": "committed entries between etcd's own snapshots",
    "etcd.autoCompactionMode": "how etcd compacts its history",
    "etcd.autoCompactionRetention": "how much history it keeps (periodic: a duration; revision: a count)",
    "etcd.cipherSuites": "TLS cipher suites of both ports",
    "etcd.firewall": "nftables on etcd nodes: 2379 for control planes and members, 2380 for members",
    "etcd.backup": "scheduled snapshots",
    "etcd.backup.enabled": "a systemd timer on every member",
    "etcd.backup.calendar": "when (systemd OnCalendar=)",
    "etcd.backup.dir": "where snapshots go on each member",
    "etcd.backup.retention": "snapshots kept per member, oldest deleted first",
    "etcd.backup.offsite": "copies off the hosts, with rclone: each snapshot of the member leading the "
                           "cluster is copied, read back and its sha256 compared, NAME.sha256 written beside it",
    "etcd.backup.offsite.remote": Doc("an rclone remote's options, e.g. {type: sftp, host: ..., user: ...} or "
                                      "{type: s3, provider: AWS, region: ...}; its secret options only in the "
                                      "secret etcdOffsiteSecrets", "none: off"),
    "etcd.backup.offsite.path": "the folder on the remote for this stack (required)",
    "etcd.backup.offsite.retention": "copies kept there (all members together)",
    "etcd.backup.offsite.knownHosts": "sftp: the server's host key line(s), pinned (required for sftp)",
    "etcd.maintenance": "defragmentation and alarms",
    "etcd.maintenance.enabled": "a per-member timer: defragment past the threshold, one member at a time "
                                "(an etcd lock), fail loudly on an alarm (NOSPACE)",
    "etcd.maintenance.calendar": "when (systemd OnCalendar=)",
    "etcd.maintenance.defragThreshold": "percent of the db file free before it is defragmented",
    "etcd.maintenance.defragMinBytes": "smaller databases are left alone",
    "etcd.restore": "restore every member from one snapshot (apiservers paused, all members stopped, the same "
                    "snapshot everywhere, a fresh cluster token, a health gate); once per snapshot content",
    "etcd.restore.snapshot": "a snapshot file on the machine running pulumi",
    "etcd.restore.offsite": "instead: a snapshot's name in backup.offsite's folder; each member fetches it",
    "etcd.restore.sha256": "the snapshot's sha256: required with offsite (`make backups` lists them); with "
                           "snapshot, checked against the file",
    "etcd.restore.bumpRevision": "revisions the restore skips ahead, so no client's cached revision is reused "
                                 "(etcdutl --bump-revision, with --mark-compacted)",
    "etcd.recover": "lost quorum (README \"Lost quorum\")",
    "etcd.recover.from": "the member whose data survived becomes a one-member cluster (--force-new-cluster; "
                         "refused while a quorum answers); then `make rebuild` each other member, one per run",
    "etcd.tuning": "etcd's share of its host",
    "etcd.tuning.ioClass": "etcd's disk I/O class (systemd IOSchedulingClass=)",
    "etcd.tuning.ioPriority": "its priority in that class, 0 first",
    "etcd.tuning.nice": "etcd's CPU priority (0: not set)",
    "etcd.tuning.fsyncCheck": "before a member first starts, measure synced writes on its data dir's disk: "
                              "warn, refuse, or off",
    "etcd.tuning.fsyncLimitMs": "the limit (etcd's guidance: 10 ms)",
    "pki": "the certificates hakube issues (etcd's CA and leaves, the apiserver's etcd client)",
    "pki.keyAlgorithm": "ECDSA P-256 or RSA 2048",
    "pki.validityHours": "each leaf's lifetime",
    "pki.earlyRenewalHours": "re-issued by `pulumi up` this long before expiry (less than validityHours)",
    "pki.check": "each node's hakube-cert-check timer",
    "pki.check.days": Doc("it fails (journal, systemctl --failed) when a certificate on the node expires "
                          "within this many days", "earlyRenewalHours / 24"),
    "pki.check.calendar": "when it runs (systemd OnCalendar=)",
    "pki.organization": "subject O of every certificate",
    "pki.rotation": "a label; changing it re-issues every leaf (rolling restarts)",
    "monitoring": "what a Prometheus outside the cluster scrapes",
    "monitoring.sources": Doc("IPv4 addresses or networks a Prometheus scrapes from; set: etcd's metrics on "
                              "each member's address, HAProxy's exporter on each load balancer and hakube's "
                              "own, each admitting these only, and the outputs prometheusScrapeConfigs and "
                              "prometheusRules", "none: off"),
    "monitoring.etcdMetricsPort": "etcd's metrics listener",
    "monitoring.haproxyMetricsPort": "HAProxy's exporter",
    "monitoring.nodeMetricsPort": "hakube's exporter on etcd members and control planes: backup age, off-host "
                                  "copy age, certificate expiry",
}

# Secrets: `pulumi config set --secret hakube:<key>`; the program reads them
# itself (config.spec.SECRET_KEYS), not through the parser.
SECRETS: dict[str, str] = {
    "sshPrivateKey": "the private key of ssh.publicKey, unencrypted "
                     "(pulumi config set --secret hakube:sshPrivateKey < ~/.ssh/id_ed25519)",
    "sshPreviousPrivateKey": "during a key rotation, for one run: the key the nodes accept today",
    "etcdOffsiteSecrets": "backup.offsite's secret rclone options, e.g. "
                          "pulumi config set --secret --path 'hakube:etcdOffsiteSecrets.key_pem' < key",
}

# A stack that makes the parser read every key: the optional sections on.
REACH_ALL = {
    "network": {"cidr": "192.168.144.0/24"},
    "etcd": {"backup": {"offsite": {"remote": {"type": "sftp"}, "path": "hakube"}},
             "restore": {"snapshot": "/nonexistent/snapshot.db"}, "recover": {"from": "etcd-01"}},
}
DEFAULTS = {"network": {"cidr": "192.168.144.0/24"}}


def facts(raw: dict) -> dict[str, KeyFact]:
    """Every key the parser reads from `raw`, by path without `hakube:`."""
    from . import spec
    with recording() as seen:
        try:
            spec.load(raw, stack="dev")
        except ConfigError:
            pass                # REACH_ALL is not a stack one could run; only its reads count
    return {f.path.split(":", 1)[1]: f for f in seen.values()}


def _role_key(path: str) -> str:
    parts = path.split(".")
    if len(parts) >= 2 and parts[0] == "nodes" and parts[1] in ROLE_NAMES:
        parts[1] = "<role>"
    return ".".join(parts)


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if value == "":
        return "none"
    return str(value)


@dataclass(frozen=True)
class Row:
    key: str
    kind: str
    allowed: str
    default: str
    text: str


def rows() -> list[Row]:
    """The reference: one row per documented key, its facts from the parser."""
    read = facts(DEFAULTS)
    every = facts(REACH_ALL)
    out = []
    for key, doc in KEYS.items():
        doc = Doc(doc) if isinstance(doc, str) else doc
        paths = [key.replace("<role>", r) for r in ROLE_NAMES] if "<role>" in key else [key]
        found = [read.get(p) or every.get(p) for p in paths]
        if not all(found):
            raise KeyError(f"{key}: documented in config/docs.py, but config.spec never reads it")
        first = found[0]
        if first.kind == "a mapping":
            out.append(Row(key, "mapping", "", "", doc.text))
            continue
        def limits(f: KeyFact) -> str:
            if f.choices:
                return " | ".join(f.choices)
            if f.minimum is not None or f.maximum is not None:
                lo = "" if f.minimum is None else f"{f.minimum}"
                hi = "" if f.maximum is None else f"{f.maximum}"
                return f"{lo}..{hi}"
            return ""
        if len(paths) > 1:
            per = [(r, f) for r, f in zip(ROLE_NAMES, found)]
            allowed = _per_role([limits(f) for _, f in per])
            default = doc.default or _per_role([_value(f.default) for _, f in per])
        else:
            allowed, default = limits(first), doc.default or _value(first.default)
        out.append(Row(key, _kind(first), allowed, default, doc.text))
    return out


def _per_role(values: list[str]) -> str:
    if len(set(values)) == 1:
        return values[0]
    return ", ".join(f"{r} {v}" for r, v in zip(ROLE_NAMES, values) if v)


def _kind(f: KeyFact) -> str:
    if f.choices:
        return "choice"
    return {"a whole number": "number", "a boolean (true or false)": "boolean", "a string": "string",
            "a list of strings": "list"}.get(f.kind, f.kind.removeprefix("an ").removeprefix("a "))


def undocumented() -> list[str]:
    """Keys the parser reads that the reference does not name."""
    known = set(KEYS)
    return sorted({_role_key(p) for p in facts(REACH_ALL)} - known)


# -- the two copies ------------------------------------------------------------

YAML_BEGIN = "# Stack config reference (generated by `make docs` from config/docs.py and the parser:"
YAML_HEAD = [
    YAML_BEGIN,
    "# edit those, not this). Every key is in the `hakube` namespace; a section is a",
    "# mapping, and an unknown key is refused by name. [default] (allowed).",
    "#",
]
WIDTH = 100


def _entry(key: str, text: str, width: int) -> list[str]:
    """`#   key   text` wrapped under its text's column."""
    first = f"#   {key:<{width}} "
    body = textwrap.wrap(text, WIDTH - len(first)) or [""]
    return [first + body[0]] + ["#" + " " * (len(first) - 1) + b for b in body[1:]]


def yaml_block() -> str:
    lines = list(YAML_HEAD)
    all_rows = rows()
    for row in all_rows:
        top, _, key = row.key.partition(".")
        if not key:
            lines.append(f"# hakube:{top}: {row.text}")
            continue
        width = max(len(r.key) for r in all_rows if r.key.startswith(top + ".")) - len(top)
        tail = "".join([f"  [{row.default}]" if row.default else "",
                        f"  ({row.allowed})" if row.allowed else ""])
        lines += _entry(key, row.text + tail, width)
    lines += ["#", "# Secrets (pulumi config set --secret hakube:<key>):"]
    for key, text in SECRETS.items():
        lines += _entry(key, text, max(map(len, SECRETS)) + 1)
    return "\n".join(lines) + "\n"


def markdown() -> str:
    out = ["# Stack config reference", "",
           "Generated by `make docs` from `config/docs.py` (the words) and the parser, `config/spec/`",
           "(each key's kind, default and limits, as it enforces them); edit those, not this page.",
           "Every key is in the `hakube` namespace; a section is a mapping, and an unknown key is",
           "refused by name, as is a value out of its limits.", ""]
    section = None
    for row in rows():
        top = row.key.split(".", 1)[0]
        if top != section:
            section = top
            text = KEYS[top] if isinstance(KEYS[top], str) else KEYS[top].text
            out += ["", f"## `hakube:{top}`", "", text[0].upper() + text[1:] + ".", "",
                    "| key | kind | default | allowed | what |", "|---|---|---|---|---|"]
        if row.key == top:
            continue
        cell = lambda s: s.replace("|", "\\|")  # noqa: E731
        out.append(f"| `{row.key}` | {row.kind} | {cell(row.default)} | {cell(row.allowed)} | {cell(row.text)} |")
    out += ["", "## Secrets", "", "Set with `pulumi config set --secret hakube:<key>`.", "",
            "| key | what |", "|---|---|"]
    out += [f"| `{k}` | {v} |" for k, v in SECRETS.items()]
    return "\n".join(out) + "\n"


def pulumi_yaml(text: str) -> str:
    """Pulumi.yaml with its reference block rewritten (the block runs to the end)."""
    start = text.index(YAML_BEGIN) if YAML_BEGIN in text else text.index("# Stack config reference")
    return text[:start] + yaml_block()
