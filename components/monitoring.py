"""What a Prometheus outside the cluster needs to watch a stack (stack
outputs when `monitoring.sources` is set): scrape configs for every etcd
member's metrics listener, every load balancer's HAProxy exporter and
hakube's own exporter on members and control planes (steps/probe.py
--prometheus: backup age, certificate expiry), and alert rules for the
failures that take an external etcd or its front door down, or will. The etcd rules follow the etcd project's own mixin
(etcd-io/etcd contrib/mixin: etcdMembersDown, etcdInsufficientMembers,
etcdNoLeader, etcdHighNumberOfLeaderChanges, etcdHighFsyncDurations,
etcdHighCommitDurations, etcdDatabaseQuotaLowSpace), with its thresholds.
Every metric they use is checked against a real scrape in the lab."""
from __future__ import annotations

import string

import yaml

from config.spec import Spec
from config.topology import NodeSpec

from . import steps

STEPS = steps.HERE

ETCD_JOB = 'job=~"hakube-.+-etcd"'
HAPROXY_JOB = 'job=~"hakube-.+-haproxy"'
NODE_JOB = 'job=~"hakube-.+-node"'
CERT_DAYS = 30          # as `make status` and the certificate-check timers


def scrape_configs(spec: Spec) -> list[dict]:
    mon, topo = spec.monitoring, spec.topology
    labels = {"hakube_stack": spec.stack}

    def job(kind: str, nodes, port: int) -> dict:
        return {"job_name": f"hakube-{spec.stack}-{kind}", "scrape_interval": "15s",
                "static_configs": [{"targets": [f"{n.ip}:{port}"], "labels": {**labels, "node": n.name}}
                                   for n in nodes]}
    return [job("etcd", topo.etcd, mon.etcd_port), job("haproxy", topo.load_balancers, mon.haproxy_port),
            job("node", exporter_nodes(spec), mon.node_port)]


def exporter_nodes(spec: Spec) -> list[NodeSpec]:
    """Where hakube's own exporter runs: the nodes with backups or certificates."""
    return [*spec.topology.etcd, *spec.topology.control_planes]


def exporter_values(spec: Spec, node: NodeSpec) -> dict:
    """The metrics step's values on `node`: its units (monitoring on), or
    METRICS=0 (off: whatever an earlier run installed is removed)."""
    mon = spec.monitoring
    if not mon.enabled:
        return {"METRICS": 0}
    listen = f"{node.ip}:{mon.node_port}"
    sources = ",".join(mon.sources)
    return {"METRICS": 1, "METRICS_LISTEN": listen, "METRICS_SOURCES": sources,
            "METRICS_SOCKET": string.Template((STEPS / "hakube-metrics.socket").read_text()).substitute(listen=listen),
            "METRICS_SERVICE": string.Template((STEPS / "hakube-metrics@.service").read_text()).substitute(
                sources=sources)}


def probe_script() -> str:
    return steps.PROBE.read_text()


def _alert(name: str, expr: str, for_: str, severity: str, summary: str) -> dict:
    return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity},
            "annotations": {"summary": summary}}


def _etcd_rules() -> dict:
    """etcd's own health: members, quorum, leader, disk, quota."""
    by = "hakube_stack"
    return {"name": "hakube-etcd", "rules": [
        _alert("HakubeEtcdMemberDown", f"up{{{ETCD_JOB}}} == 0", "1m", "warning",
               "etcd member {{ $labels.node }} of stack {{ $labels.hakube_stack }} is not answering"),
        _alert("HakubeEtcdInsufficientMembers",
               f"sum by ({by}) (up{{{ETCD_JOB}}}) < ((count by ({by}) (up{{{ETCD_JOB}}}) + 1) / 2)",
               "1m", "critical", "etcd of stack {{ $labels.hakube_stack }} has lost its quorum: "
                                 "the Kubernetes API cannot write"),
        _alert("HakubeEtcdNoLeader", f"etcd_server_has_leader{{{ETCD_JOB}}} == 0", "1m", "critical",
               "etcd member {{ $labels.node }} of stack {{ $labels.hakube_stack }} has no leader"),
        _alert("HakubeEtcdFrequentLeaderChanges",
               f"increase(etcd_server_leader_changes_seen_total{{{ETCD_JOB}}}[15m]) >= 4", "5m", "warning",
               "etcd member {{ $labels.node }} saw {{ $value }} leader changes in 15 minutes "
               "(slow disk or network between members?)"),
        _alert("HakubeEtcdSlowFsync",
               "histogram_quantile(0.99, sum by (hakube_stack, node, le) "
               f"(rate(etcd_disk_wal_fsync_duration_seconds_bucket{{{ETCD_JOB}}}[5m]))) > 0.5",
               "10m", "warning", "etcd member {{ $labels.node }}: 99th percentile WAL fsync is "
                                 "{{ $value }} s (etcd wants well under 10 ms)"),
        _alert("HakubeEtcdSlowCommit",
               "histogram_quantile(0.99, sum by (hakube_stack, node, le) "
               f"(rate(etcd_disk_backend_commit_duration_seconds_bucket{{{ETCD_JOB}}}[5m]))) > 0.25",
               "10m", "warning", "etcd member {{ $labels.node }}: 99th percentile backend commit is "
                                 "{{ $value }} s"),
        _alert("HakubeEtcdDatabaseNearQuota",
               f"etcd_mvcc_db_total_size_in_bytes{{{ETCD_JOB}}} / "
               f"etcd_server_quota_backend_bytes{{{ETCD_JOB}}} > 0.8", "10m", "warning",
               "etcd member {{ $labels.node }}: its database is {{ $value | humanizePercentage }} of its "
               "quota; defragment or compact before writes are refused (NOSPACE)"),
    ]}


def _node_rules() -> dict:
    """hakube's exporter: backups (local and off-host) and certificate expiry."""
    by = "hakube_stack"
    return {"name": "hakube-node", "rules": [
        _alert("HakubeExporterDown", f"up{{{NODE_JOB}}} == 0", "5m", "warning",
               "hakube's exporter on {{ $labels.node }} of stack {{ $labels.hakube_stack }} is not answering: "
               "its backup and certificate alerts are blind"),
        _alert("HakubeEtcdBackupTooOld",
               f"time() - hakube_etcd_backup_last_success_timestamp_seconds{{{NODE_JOB}}} > "
               f"2 * hakube_etcd_backup_interval_seconds{{{NODE_JOB}}} + 300", "5m", "warning",
               "etcd member {{ $labels.node }}: no verified snapshot for {{ $value | humanizeDuration }} "
               "(journalctl -u hakube-etcd-backup)"),
        _alert("HakubeEtcdOffsiteBackupTooOld",
               f"time() - max by ({by}) (hakube_etcd_backup_offsite_last_success_timestamp_seconds{{{NODE_JOB}}}) > "
               f"2 * max by ({by}) (hakube_etcd_backup_interval_seconds{{{NODE_JOB}}}) + 300", "5m", "warning",
               "stack {{ $labels.hakube_stack }}: no snapshot copied off-host and checked for "
               "{{ $value | humanizeDuration }} (journalctl -t hakube-etcd-backup on the leader)"),
        _alert("HakubeCertificateExpiresSoon",
               f"hakube_certificate_expiry_timestamp_seconds{{{NODE_JOB}}} - time() < {CERT_DAYS} * 86400",
               "10m", "warning", "{{ $labels.path }} on {{ $labels.node }} expires in "
                                 "{{ $value | humanizeDuration }} (pulumi up renews hakube's; kubeadm's are "
                                 "renewed by hakube-kubeadm-certs-renew)"),
    ]}


def _haproxy_rules() -> dict:
    """The load balancers and the apiservers behind them."""
    return {"name": "hakube-haproxy", "rules": [
        _alert("HakubeLoadBalancerDown", f"up{{{HAPROXY_JOB}}} == 0", "1m", "warning",
               "HAProxy on {{ $labels.node }} of stack {{ $labels.hakube_stack }} is not answering"),
        _alert("HakubeApiserverBackendDown",
               f'haproxy_server_status{{{HAPROXY_JOB}, proxy="kube-apiservers", state="UP"}} == 0', "1m",
               "warning", "load balancer {{ $labels.node }} sees the apiserver {{ $labels.server }} "
                          "down (its /readyz check fails)"),
    ]}


def rules() -> dict:
    return {"groups": [_etcd_rules(), _node_rules(), _haproxy_rules()]}


def scrape_configs_yaml(spec: Spec) -> str:
    return yaml.safe_dump(scrape_configs(spec), sort_keys=False)


def rules_yaml() -> str:
    return yaml.safe_dump(rules(), sort_keys=False, width=200)


def alerts_page() -> str:
    """docs/alerts.md: every alert as prometheusRules holds it (make docs)."""
    out = ["# Alerts", "",
           "Generated by `make docs` from `components/monitoring.py`, the rules the stack output",
           "`prometheusRules` holds (with `hakube:monitoring.sources` set); edit those, not this page.",
           "The etcd thresholds are those of etcd's own mixin (etcd-io/etcd contrib/mixin).", ""]
    for group in rules()["groups"]:
        out += [f"## {group['name']}", "", "| alert | severity | for | fires when | says |", "|---|---|---|---|---|"]
        for r in group["rules"]:
            cell = lambda s: s.replace("|", "\\|")  # noqa: E731
            out.append(f"| {r['alert']} | {r['labels']['severity']} | {r['for']} | `{cell(r['expr'])}` | "
                       f"{cell(r['annotations']['summary'])} |")
        out.append("")
    return "\n".join(out)
