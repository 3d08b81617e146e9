"""The external etcd cluster: per member, idempotent steps over SSH
(prepare -> install -> certs -> config -> units -> firewall), then each
member started or joined one after another (a member new to a running
cluster joins as a learner and is promoted), one cluster health gate, a
rolling restart chain that applies later changes one member at a time
without losing quorum, and a membership step that removes the members the
stack no longer configures before their VMs go.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pulumi
from pulumi_command import remote

from config import versions
from config.spec import EtcdSpec, Spec

from ..node import Node
from ..pki import Pki
from .. import steps
from ..remote import copy_file, digest
from ..remote import step as make_step
from . import payloads as payload

HERE = Path(__file__).parent
WAIT_TRIES = 90                      # x 2 s: how long a member or the cluster may take


def step_script(path: Path, values: dict) -> str:
    """An etcd step (a file here, or a shared one of steps/), with the etcd helpers, run as root."""
    return steps.step_script(path, values, libs=["etcd.sh"])


def member_bins(etcd: EtcdSpec) -> tuple[str, ...]:
    return ("etcd", "etcdctl", "etcdutl") if etcd.has_etcdutl else ("etcd", "etcdctl")


def install_script(etcd: EtcdSpec, bins: Sequence[str], extra: dict | None = None) -> str:
    """Install `bins` of the pinned etcd release (members; etcdctl alone on control planes)."""
    return step_script(HERE / "install.sh", {
        **(extra or {}),
        "ETCD_VERSION": etcd.version,
        "ETCD_BASE_URL": etcd.download_url,
        "ETCD_TARBALL": etcd.tarball,
        "ETCD_SHA256": etcd.sha256 or "",
        "ETCD_BINS": " ".join(bins),
        "ETCD_UPGRADE_FLOORS": versions.etcd_upgrade_floors(),
    })


def timer_job(job: str, description: str, enabled: bool, calendar: str, disabled_note: str,
              script: Path, values: dict) -> tuple[dict, str]:
    """A scheduled job of every member (steps.job): its values and the
    script hakube-etcd-<job>.service runs (values, the installed etcd
    helpers, the job's own file)."""
    unit = f"hakube-etcd-{job}"
    return (steps.job(unit, description, calendar, enabled, f"hakube:etcd.{job}", disabled_note,
                      HERE / job / f"{unit}.service"),
            steps.job_body(script, values, libs=["etcd.sh"]))


@dataclass(frozen=True)
class EtcdClusterArgs:
    spec: Spec
    members: Sequence[Node]
    pki: Pki
    # The off-host remote's secret rclone options (secret config
    # hakube:etcdOffsiteSecrets, checked by config.spec.offsite_secrets).
    offsite_secrets: Optional[pulumi.Input[dict]] = None


@dataclass
class MemberSteps:
    prepare: remote.Command
    install: remote.Command
    certs: remote.Command
    config: remote.Command
    unit: remote.Command
    firewall: Optional[remote.Command]
    payload: pulumi.Output          # digest of everything a restart must pick up
    certs_not_after: pulumi.Output  # the same, for people: the member's certificates' expiry
    cluster: Optional[remote.Command] = None    # the member's cluster file
    start: Optional[remote.Command] = None      # start, or join a running cluster (in member order)
    restart: Optional[remote.Command] = None


def gate_values() -> dict:
    """What every step that waits on etcd needs."""
    return {"PKI_DIR": payload.PKI_DIR, "WAIT_TRIES": WAIT_TRIES}


def membership_values(spec: Spec) -> dict:
    """What the steps that act on the membership carry (start, health,
    membership): the configured members. The other steps read the member's
    cluster file through the helpers, so a membership change is not their
    change."""
    endpoints = ",".join(spec.topology.etcd_client_endpoints)
    return {**gate_values(), "ETCD_DATA_DIR": spec.etcd.data_dir,
            "ETCD_INITIAL_CLUSTER": spec.topology.etcd_initial_cluster, "ETCD_ENDPOINTS": endpoints}


def scheduled_jobs(etcd: EtcdSpec) -> dict[str, tuple[dict, str]]:
    """step name -> (job values, its script): the jobs every member runs on a timer."""
    backup, upkeep = etcd.backup, etcd.maintenance
    return {
        "backup": timer_job(
            "backup", "scheduled etcd snapshots", backup.enabled, backup.calendar,
            "snapshots in " + backup.dir + " are kept", HERE / "backup" / "snapshot.sh",
            {"BACKUP_DIR": backup.dir, "BACKUP_RETENTION": backup.retention, "PKI_DIR": payload.PKI_DIR,
             **payload.offsite_values(backup.offsite)}),
        "maintenance": timer_job(
            "maintenance", "etcd maintenance (defragmentation, alarms)", upkeep.enabled, upkeep.calendar,
            "nothing kept", HERE / "maintenance" / "maintain.sh",
            {**gate_values(), "DEFRAG_THRESHOLD": upkeep.defrag_threshold,
             "DEFRAG_MIN_BYTES": upkeep.defrag_min_bytes}),
    }


def restart_inputs(args: EtcdClusterArgs, member: str, config: str,
                   unit_text: str) -> tuple[pulumi.Output, pulumi.Output]:
    """What a running member must restart for, as a digest: its certificates
    (a new key always comes with a new certificate, so no secret is needed
    here), config (`config`: without initial-cluster*, which etcd reads only
    when a member is created, so a membership change alone restarts nobody),
    unit and version; and its certificates' expiry, for people."""
    certs = args.pki.members[member]
    digest_of = pulumi.Output.all(
        args.pki.ca_cert_pem, args.pki.peer_ca_cert_pem, certs.server.cert_pem, certs.peer.cert_pem,
        args.pki.healthcheck_client.cert_pem,
    ).apply(lambda pems: digest(*pems, config, unit_text, args.spec.etcd.version))
    not_after = pulumi.Output.all(certs.server.not_after, certs.peer.not_after).apply(
        lambda v: f"server {v[0]}, peer {v[1]}")
    return digest_of, not_after


class EtcdCluster(pulumi.ComponentResource):
    """Each step gets the values it uses and no more: under the real engine
    a step runs again when its text changes. Steps are registered in the
    order the methods below run (the state's order, which `pulumi destroy`
    reads): each member's setup, the recovery, each member's start and
    jobs, the health gate, the restart chain; the membership step last
    (`settle_membership`, once the control planes are done)."""
    endpoints: list[str]
    etcdctl_env: str
    health: remote.Command
    steps: dict[str, MemberSteps]
    converge: list[remote.Command]      # the checks-and-repairs `make converge` runs again

    def __init__(self, name: str, args: EtcdClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:etcd:EtcdCluster", name, None, opts)
        topo = args.spec.topology
        self.endpoints = list(topo.etcd_client_endpoints)
        self.etcdctl_env = payload.etcdctl_env(topo)
        backup = args.spec.etcd.backup
        self.latest_snapshot = f"{backup.dir}/latest.db" if backup.enabled else None
        self.backups: dict[str, remote.Command] = {}
        self.offsite: dict[str, remote.Command] = {}
        self.steps = {}
        disk_checks: dict[str, pulumi.Resource] = {}
        for member in args.members:
            self.steps[member.name], check = self._member_setup(name, args, member)
            if check is not None:
                disk_checks[member.name] = check
        self.recover = self._recover(name, args)
        self._starts(name, args, disk_checks)
        self.health = make_step(f"{name}-health", args.members[0], step_script(HERE / "health.sh",
                                                                               membership_values(args.spec)),
                                parent=self, after=[s.start for s in self.steps.values()])
        self.converge.append(self.health)
        self.last_restart = self._restarts(name, args)
        self.membership: Optional[remote.Command] = None
        self.settled: list[pulumi.Resource] = [self.last_restart]
        self.register_outputs({"endpoints": self.endpoints, "etcdctl_env": self.etcdctl_env,
                               "latest_snapshot": self.latest_snapshot})

    def _member_setup(self, name: str, args: EtcdClusterArgs,
                      member: Node) -> tuple[MemberSteps, Optional[remote.Command]]:
        """A member's steps up to its start: prepare, cluster file, install,
        certs, config, unit, the disk check and the firewall."""
        etcd, topo, mon = args.spec.etcd, args.spec.topology, args.spec.monitoring
        node, certs = topo.node(member.name), args.pki.members[member.name]

        def step(step_name: str, script: str, *, after: Sequence[pulumi.Resource],
                 stdin=None, secret: bool = False) -> remote.Command:
            return make_step(f"{name}-{member.name}-{step_name}", member, script, stdin=stdin, secret=secret,
                             parent=self, after=after)

        prepare = step("prepare", step_script(HERE / "prepare.sh", {
            "PKI_DIR": payload.PKI_DIR, "ETCD_DATA_DIR": etcd.data_dir}), after=[member.ready])
        cluster = step("cluster", step_script(steps.FILE, {
            "DEST": payload.CLUSTER_FILE, "MODE": "0644", "OWNER": "root:root"}),
            stdin=payload.cluster_env(topo), after=[prepare])
        install = step("install", install_script(etcd, member_bins(etcd), {"PKI_DIR": payload.PKI_DIR}),
                       after=[cluster])
        bundle = pulumi.Output.secret(pulumi.Output.all(
            args.pki.ca_cert_pem, args.pki.peer_ca_cert_pem, certs.server.cert_pem, certs.server.key_pem,
            certs.peer.cert_pem, certs.peer.key_pem,
            args.pki.healthcheck_client.cert_pem, args.pki.healthcheck_client.key_pem,
        ).apply(payload.cert_bundle))
        certs_step = step("certs", step_script(steps.PEM_FILES, {
            "PEM_FILES": steps.pem_files_spec(payload.CERT_FILES)}), stdin=bundle, secret=True, after=[prepare])
        metrics_port = mon.etcd_port if mon.enabled else None
        # after install: a refused upgrade leaves the running config alone too
        config = step("config", step_script(steps.FILE, {
            "DEST": payload.CONFIG_FILE, "MODE": "0644", "OWNER": "root:root"}),
            stdin=payload.etcd_config_yaml(etcd, topo, node, metrics_port=metrics_port), after=[install])
        unit_text = payload.etcd_unit(etcd, (HERE / "etcd.service").read_text())
        unit = step("unit", step_script(steps.UNIT, {"UNIT": "etcd.service"}), stdin=unit_text, after=[install])
        disk_check = None
        if etcd.tuning.fsync_check != "off":
            # before the member first starts: is the disk fast enough for etcd?
            disk_check = step("disk-check", step_script(HERE / "disk-check.sh", {
                "ETCD_DATA_DIR": etcd.data_dir, "MODE": etcd.tuning.fsync_check,
                "FSYNC_LIMIT_MS": etcd.tuning.fsync_limit_ms, "FSYNC_COUNT": 200}), after=[prepare])
        # The firewall step is registered either way: with the firewall off
        # it removes hakube's table (FIREWALL=0), so turning it off takes
        # effect on the nodes.
        fw_after: list[pulumi.Resource] = [cluster]
        if etcd.firewall:
            fw_after.append(step("firewall-unit", step_script(steps.UNIT, {"UNIT": "hakube-etcd-firewall.service"}),
                                 stdin=(HERE / "firewall.service").read_text(), after=[prepare]))
        firewall = step("firewall", step_script(HERE / "firewall.sh", {"PKI_DIR": payload.PKI_DIR,
                                                                       "FIREWALL": int(etcd.firewall)}),
                        stdin=payload.firewall_ruleset(topo, node, mon) if etcd.firewall else "", after=fw_after)
        restart_config = payload.etcd_config_yaml(etcd, topo, node, membership=False, metrics_port=metrics_port)
        return MemberSteps(prepare, install, certs_step, config, unit, firewall,
                           *restart_inputs(args, member.name, restart_config, unit_text), cluster=cluster), disk_check

    def _recover(self, name: str, args: EtcdClusterArgs) -> Optional[remote.Command]:
        """Lost quorum (etcd.recover.from): a one-member cluster from the
        survivor's data, before any member starts or joins in this run (a
        rebuilt one then joins it). On the bare connection, without the
        machine id: the step runs when the key is added, and a later rebuild
        of that member does not run it again."""
        etcd = args.spec.etcd
        if etcd.recover is None:
            return None
        source = next(m for m in args.members if m.name == etcd.recover.source)
        s, node = self.steps[source.name], args.spec.topology.node(source.name)
        return make_step(
            f"{name}-recover-{source.name}", source.connection, step_script(HERE / "recover.sh", {
                **gate_values(), "ETCD_DATA_DIR": etcd.data_dir, "ETCD_ENDPOINTS": ",".join(self.endpoints),
                "MEMBER_NAME": source.name, "MEMBER_PEER_URL": node.peer_url,
                "MEMBER_CLIENT_URL": node.client_url, "ETCD_CONFIG_FILE": payload.CONFIG_FILE,
                "RECOVER_TOKEN": f"{etcd.cluster_token}-recovered"}),
            parent=self, after=[x for x in (s.install, s.certs, s.config, s.unit, s.firewall) if x is not None])

    def _starts(self, name: str, args: EtcdClusterArgs, disk_checks: dict[str, pulumi.Resource]) -> None:
        """Members start (or join) one after another, each once every
        member's firewall admits the whole membership. A bootstrapping
        member returns as soon as it listens (its quorum needs the later
        ones: Type=notify would deadlock); a joining one returns promoted
        and serving. Then each member's off-host remote and jobs."""
        spec, backup = args.spec, args.spec.etcd.backup
        firewalls = [s.firewall for s in self.steps.values() if s.firewall is not None]
        self.converge = list(firewalls)
        # The off-host step is registered either way (as the firewall step
        # is): with etcd.backup.offsite unset it removes the remote's config
        # (OFFSITE=0). A delete script would not do: it also runs when the
        # step is replaced, after the new one's create.
        offsite_values = payload.offsite_values(backup.offsite) or {"OFFSITE": 0, "OFFSITE_DIR": payload.OFFSITE_DIR}
        offsite_stdin = None
        if backup.offsite is not None:
            offsite_stdin = pulumi.Output.secret(pulumi.Output.from_input(args.offsite_secrets or {}).apply(
                lambda secrets: payload.rclone_config(backup.offsite, secrets)))
        jobs = scheduled_jobs(spec.etcd)
        # its certificates checked daily against their expiry (fails loudly)
        check_values, check_script = steps.cert_check(
            spec.stack, spec.pki.check_days, spec.pki.check_calendar,
            [f[0] for f in payload.CERT_FILES if not f[0].endswith(".key")])
        previous_start: Optional[pulumi.Resource] = None
        for member in args.members:
            s, node = self.steps[member.name], spec.topology.node(member.name)
            s.start = make_step(
                f"{name}-{member.name}-start", member, step_script(HERE / "start.sh", {
                    **membership_values(spec), "MEMBER_NAME": member.name, "MEMBER_PEER_URL": node.peer_url,
                    "MEMBER_CLIENT_URL": node.client_url, "FIRST_MEMBER": args.members[0].name,
                    "ETCD_CONFIG_FILE": payload.CONFIG_FILE}),
                parent=self, after=[*(x for x in (s.install, s.certs, s.config, s.unit) if x is not None),
                                    *firewalls, *([previous_start] if previous_start else []),
                                    *([self.recover] if self.recover else []),
                                    *([disk_checks[member.name]] if member.name in disk_checks else [])])
            previous_start = s.start
            self.converge.append(s.start)
            # the remote configured and answering before a snapshot counts on it
            self.offsite[member.name] = make_step(
                f"{name}-{member.name}-offsite", member, step_script(HERE / "backup" / "offsite.sh", offsite_values),
                stdin=offsite_stdin, secret=backup.offsite is not None, parent=self, after=[s.install])
            for job, (values, script) in jobs.items():
                created = make_step(f"{name}-{member.name}-{job}", member,
                                    steps.job_step_script(values, libs=["etcd.sh"]),
                                    stdin=script, parent=self, after=[s.start, self.offsite[member.name]])
                self.converge.append(created)
                if job == "backup":
                    self.backups[member.name] = created
            self.converge.append(make_step(f"{name}-{member.name}-cert-check", member,
                                           steps.job_step_script(check_values), stdin=check_script, parent=self,
                                           after=[s.certs]))

    def _restarts(self, name: str, args: EtcdClusterArgs) -> pulumi.Resource:
        """Later changes of certs, config, unit or version: one member at a
        time, each waiting for a healthy cluster before and after. The
        payload digest is in the script's text, so a change is an *update*
        of this step (the real engine replaces a Command only for
        `triggers`, and a replacement runs `create`). The script itself
        decides from what the member runs (restart.sh), so `create` and a
        re-run are safe. Returns the last member's restart."""
        previous: pulumi.Resource = self.health
        for member in args.members:
            s = self.steps[member.name]
            # CERTS_NOT_AFTER: what a person reads in a preview or review
            # (the payload is a digest); the script does not use it.
            restart = pulumi.Output.all(s.payload, s.certs_not_after).apply(lambda v: step_script(
                HERE / "restart.sh", {**gate_values(), "ETCD_VERSION": args.spec.etcd.version,
                                      "RESTART_PAYLOAD": v[0], "CERTS_NOT_AFTER": v[1]}))
            s.restart = make_step(f"{name}-{member.name}-restart", member, restart, update=restart,
                                  parent=self, after=[previous, s.install, s.certs, s.config, s.unit, s.cluster])
            previous = s.restart
        return previous

    def settle_membership(self, name: str, args: EtcdClusterArgs,
                          after: Sequence[pulumi.Resource]) -> list[pulumi.Resource]:
        """Remove the members the stack no longer configures (`member remove`,
        one at a time, refused when unsafe), once `after` (the control planes,
        whose etcd endpoint lists drop them first) is done; then every
        member's firewall is refreshed to the configured membership. `name`
        and `args`: this component's. Returns what is settled once the
        membership is."""
        first = args.members[0]
        node = args.spec.topology.node(first.name)
        self.membership = make_step(
            f"{name}-membership", first,
            step_script(HERE / "membership.sh", {**membership_values(args.spec), "MEMBER_NAME": first.name,
                                                 "MEMBER_PEER_URL": node.peer_url}),
            parent=self, after=[self.last_restart, *after])
        self.settled = [self.membership]
        for member in args.members:
            s = self.steps[member.name]
            if s.firewall is None or not args.spec.etcd.firewall:
                continue
            self.settled.append(make_step(
                f"{name}-{member.name}-firewall-refresh", member,
                step_script(HERE / "firewall.sh", {"PKI_DIR": payload.PKI_DIR, "REFRESH": 1}),
                stdin=payload.firewall_ruleset(args.spec.topology, args.spec.topology.node(member.name),
                                               args.spec.monitoring),
                parent=self, after=[self.membership]))
        return self.settled


@dataclass(frozen=True)
class EtcdRestoreArgs:
    spec: Spec
    etcd: "EtcdCluster"
    members: Sequence[Node]
    control_planes: Sequence[Node]     # their apiservers pause during the restore
    after: Sequence[pulumi.Resource]   # everything that must be settled first


class EtcdRestore(pulumi.ComponentResource):
    """Restore every member from the one snapshot named in `etcd.restore`:
    copy it to every member, (apiservers paused) stop every member, restore
    the same snapshot everywhere with a fresh cluster token, start all, gate
    on cluster health, resume. Its resources are keyed by the snapshot's
    sha256, so a restore runs once per snapshot named; each member also keeps
    a marker, written only after the cluster gate, so a failed restore is
    redone whole by the next `pulumi up`."""

    def __init__(self, name: str, args: EtcdRestoreArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:etcd:EtcdRestore", name, None, opts)
        spec, restore = args.spec, args.spec.etcd.restore
        topo = spec.topology
        sha = restore.sha256
        upload_dir = "/var/lib/hakube/upload"
        restore_dir = "/var/lib/hakube/restore"
        # a file of this machine is copied up by the provider; an off-host
        # one, fetched by each member into its own restore dir
        upload = f"{restore_dir}/fetched-{sha[:16]}.db" if restore.offsite else f"{upload_dir}/restore-{sha[:16]}.db"
        values = {"RESTORE_SHA": sha, "RESTORE_DIR": restore_dir, "RESTORE_UPLOAD": upload,
                  "RESTORE_TOKEN": f"{spec.etcd.cluster_token}-restore-{sha[:8]}",
                  "ETCD_DATA_DIR": spec.etcd.data_dir, "ETCD_INITIAL_CLUSTER": topo.etcd_initial_cluster,
                  "ETCD_ENDPOINTS": ",".join(args.etcd.endpoints), "PKI_DIR": payload.PKI_DIR,
                  "WAIT_TRIES": WAIT_TRIES}

        def script(name: str, **extra) -> str:
            return steps.step_script(HERE / "restore" / f"{name}.sh", {**values, **extra},
                                     libs=["etcd.sh"])

        def run(node: Node, step: str, create: str, after: Sequence[pulumi.Resource],
                undo: str | None = None) -> remote.Command:
            # Keyed by the snapshot: a run names one snapshot, and a step that
            # succeeded is not run again (a failed run resumes where it
            # failed; each script checks what it needs first). `undo`: the
            # part of abandon.sh its delete runs when the key is dropped.
            return make_step(f"{name}-{sha[:8]}-{node.name}-{step}", node, create,
                             delete=script("abandon", PART=undo) if undo else None, parent=self, after=after)

        copies: list[pulumi.Resource]
        if restore.offsite:
            copies = [run(m, "fetch", script("fetch", RESTORE_NAME=restore.offsite,
                                             **payload.offsite_values(spec.etcd.backup.offsite)),
                          [*args.after, *([args.etcd.offsite[m.name]] if m.name in args.etcd.offsite else [])])
                      for m in args.members]
        else:
            dirs = [run(m, "upload-dir", script("upload", UPLOAD_DIR=upload_dir, UPLOAD_USER=spec.ssh.user),
                        args.after) for m in args.members]
            copies = [copy_file(f"{name}-{sha[:8]}-{m.name}-copy", m, restore.snapshot, upload, parent=self,
                                after=[d]) for m, d in zip(args.members, dirs)]
        apiservers = args.control_planes if spec.kubernetes.bootstrap else []   # practice mode: none
        paused = [run(cp, "apiserver-stop", script("apiserver", ACTION="stop"), copies, undo="apiserver")
                  for cp in apiservers]
        stopped = [run(m, "stop", script("stop"), [*copies, *paused], undo="stop") for m in args.members]
        restored = [run(m, "data", script("data", MEMBER_NAME=m.name, MEMBER_PEER_URL=topo.node(m.name).peer_url,
                                                 RESTORE_BUMP_REVISION=restore.bump_revision),
                        stopped, undo="data") for m in args.members]
        started = [run(m, "start", script("start"), restored) for m in args.members]
        gate = run(args.members[0], "health", step_script(HERE / "health.sh", values), started)
        finished = [run(m, "finish", script("finish"), [gate]) for m in args.members]
        for cp in apiservers:
            run(cp, "apiserver-start", script("apiserver", ACTION="start"), finished)
        self.register_outputs({"snapshot_sha256": sha})
