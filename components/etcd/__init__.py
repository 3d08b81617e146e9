"""The external etcd cluster: per member, idempotent steps over SSH
(prepare -> install -> certs -> config -> units -> firewall -> start), one
cluster health gate after every member has started, and a rolling restart
chain that applies later changes one member at a time without losing quorum.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pulumi
from pulumi_command import remote

from config.spec import EtcdSpec, Spec

from ..node import Node
from ..pki import Pki
from .. import steps
from ..remote import digest, render
from . import payloads as payload

HERE = Path(__file__).parent
WAIT_TRIES = 90                      # x 2 s: how long a member or the cluster may take
NO_LOGS = remote.Logging.NONE


def step_script(name: str, values: dict) -> str:
    """An etcd step (a file here, or a shared one) behind the etcd helpers, run as root."""
    own = HERE / f"{name}.sh"
    return steps.step_script(own if own.exists() else name, values, libs=[HERE / "lib.sh"])


def member_bins(etcd: EtcdSpec) -> tuple[str, ...]:
    return ("etcd", "etcdctl", "etcdutl") if etcd.has_etcdutl else ("etcd", "etcdctl")


def install_script(etcd: EtcdSpec, bins: Sequence[str], extra: dict | None = None) -> str:
    """Install `bins` of the pinned etcd release (members; etcdctl alone on control planes)."""
    return step_script("install", {
        **(extra or {}),
        "ETCD_VERSION": etcd.version,
        "ETCD_BASE_URL": etcd.download_url,
        "ETCD_TARBALL": etcd.tarball,
        "ETCD_SHA256": etcd.sha256 or "",
        "ETCD_BINS": " ".join(bins),
    })


@dataclass(frozen=True)
class EtcdClusterArgs:
    spec: Spec
    members: Sequence[Node]
    pki: Pki


@dataclass
class MemberSteps:
    prepare: remote.Command
    install: remote.Command
    certs: remote.Command
    config: remote.Command
    unit: remote.Command
    firewall: Optional[remote.Command]
    start: remote.Command
    payload: pulumi.Output          # digest of everything a restart must pick up
    restart: Optional[remote.Command] = None


class EtcdCluster(pulumi.ComponentResource):
    endpoints: list[str]
    etcdctl_env: str
    health: remote.Command
    steps: dict[str, MemberSteps]

    def __init__(self, name: str, args: EtcdClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:etcd:EtcdCluster", name, None, opts)
        etcd, topo = args.spec.etcd, args.spec.topology
        self.endpoints = list(topo.etcd_client_endpoints)
        self.etcdctl_env = payload.etcdctl_env(topo)
        base = {
            "PKI_DIR": payload.PKI_DIR,
            "ETCD_DATA_DIR": etcd.data_dir,
            "ETCD_INITIAL_CLUSTER": topo.etcd_initial_cluster,
            "ETCD_ENDPOINTS": ",".join(self.endpoints),
            "WAIT_TRIES": WAIT_TRIES,
        }
        unit_text = (HERE / "etcd.service").read_text()
        firewall_unit_text = (HERE / "firewall.service").read_text()

        backup = etcd.backup
        backup_values = {
            "BACKUP_ENABLED": int(backup.enabled), "BACKUP_DIR": backup.dir,
            "BACKUP_CALENDAR": backup.calendar,
            "BACKUP_SERVICE": (HERE / "backup" / "hakube-etcd-backup.service").read_text(),
            "BACKUP_TIMER": string.Template((HERE / "backup" / "hakube-etcd-backup.timer").read_text())
            .substitute(calendar=backup.calendar),
        }
        backup_script = "#!/bin/bash\n" + render(HERE / "backup" / "snapshot.sh", {
            "BACKUP_DIR": backup.dir, "BACKUP_RETENTION": backup.retention, "PKI_DIR": payload.PKI_DIR})
        self.latest_snapshot = f"{backup.dir}/latest.db" if backup.enabled else None
        self.backups: dict[str, remote.Command] = {}
        self.steps = {}
        for member in args.members:
            node = topo.node(member.name)
            certs = args.pki.members[member.name]
            conn = member.connection
            key = f"{name}-{member.name}"

            def step(step_name: str, script: str, *, after: Sequence[pulumi.Resource],
                     stdin=None, secret: bool = False, **kw) -> remote.Command:
                return remote.Command(
                    f"{key}-{step_name}", connection=conn, create=script, stdin=stdin,
                    logging=NO_LOGS if secret else None, **kw,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)))

            prepare = step("prepare", step_script("prepare", base), after=[member.ready])
            install = step("install", install_script(etcd, member_bins(etcd), base),
                           after=[prepare])
            bundle = pulumi.Output.secret(pulumi.Output.all(
                args.pki.ca_cert_pem, args.pki.peer_ca_cert_pem, certs.server.cert_pem, certs.server.key_pem,
                certs.peer.cert_pem, certs.peer.key_pem,
                args.pki.healthcheck_client.cert_pem, args.pki.healthcheck_client.key_pem,
            ).apply(payload.cert_bundle))
            certs_step = step("certs", step_script("pem_files", {
                **base, "PEM_FILES": steps.pem_files_spec(payload.CERT_FILES)}),
                              stdin=bundle, secret=True, after=[prepare])
            config_text = payload.etcd_config_yaml(etcd, topo, node)
            config = step("config", step_script("file", {
                **base, "DEST": payload.CONFIG_FILE, "MODE": "0644", "OWNER": "root:root"}),
                stdin=config_text, after=[prepare])
            unit = step("unit", step_script("unit", {**base, "UNIT": "etcd.service"}),
                        stdin=unit_text, after=[install])
            firewall = None
            if etcd.firewall:
                fw_unit = step("firewall-unit", step_script(
                    "unit", {**base, "UNIT": "hakube-etcd-firewall.service"}),
                    stdin=firewall_unit_text, after=[prepare])
                firewall = step("firewall", step_script("firewall", base),
                                stdin=payload.firewall_ruleset(topo, node), after=[fw_unit])
            # No member's start waits for another's: with Type=notify that deadlocks.
            start = step("start", step_script("start", base), after=[
                s for s in (install, certs_step, config, unit, firewall) if s is not None])
            self.backups[member.name] = step("backup", step_script("backup", {
                **base, **backup_values}), stdin=backup_script, after=[start])
            payload_digest = bundle.apply(lambda b, c=config_text: digest(b, c, unit_text, etcd.version))
            self.steps[member.name] = MemberSteps(prepare, install, certs_step, config, unit,
                                                  firewall, start, payload_digest)

        first = args.members[0]
        self.health = remote.Command(
            f"{name}-health", connection=first.connection,
            create=step_script("health", base),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[s.start for s in self.steps.values()]))

        # Later changes of certs, config, unit or version: one member at a time,
        # each waiting for a healthy cluster before and after. `create` only
        # records the payload (a fresh cluster was just started with it).
        previous: pulumi.Resource = self.health
        for member in args.members:
            s = self.steps[member.name]
            s.restart = remote.Command(
                f"{name}-{member.name}-restart", connection=member.connection,
                create="true", update=step_script("restart", base),
                triggers=[s.payload], logging=NO_LOGS,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[
                    previous, s.install, s.certs, s.config, s.unit]))
            previous = s.restart

        self.register_outputs({"endpoints": self.endpoints, "etcdctl_env": self.etcdctl_env,
                               "latest_snapshot": self.latest_snapshot})
