"""The etcd cluster's plan: per member its setup (prepare, cluster file,
install, certificates, config, unit, the disk check, the firewall), the
recovery of a lost quorum, each member started or joined in member order
with its off-host remote and jobs, one health gate, the rolling restart
chain; and, once the control planes are done, the membership step and each
firewall refreshed. Plain values (steps/plan.py): the certificates and the
off-host secrets are Derived from the outputs realize is handed (SOURCES).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

from config import versions
from config.spec import EtcdSpec, OffsiteSpec, Spec

from .. import steps
from ..steps.plan import READY, Copy, Derived, Step, check, digest
from . import payloads as payload

HERE = Path(__file__).parent
WAIT_TRIES = 90                      # x 2 s: how long a member or the cluster may take
LIBS = ("etcd.sh",)

# The outputs the plan's Derived values read (realize's `sources`): the
# CAs and the health-check client's pair, and per member (member_source).
CA, PEER_CA, HEALTHCHECK_CERT, HEALTHCHECK_KEY = "ca", "peer-ca", "healthcheck-cert", "healthcheck-key"
MEMBER_SOURCES = ("server-cert", "server-key", "peer-cert", "peer-key", "server-not-after", "peer-not-after")
OFFSITE_SECRETS = "offsite-secrets"
# what the membership plan runs after that is not its own (realize's `outside`)
RESTARTS_DONE, CONTROL_PLANES_DONE = "restarts done", "control planes done"


def member_source(member: str, what: str) -> str:
    return f"{member}/{what}"


def member_bins(etcd: EtcdSpec) -> tuple[str, ...]:
    return ("etcd", "etcdctl", "etcdutl") if etcd.has_etcdutl else ("etcd", "etcdctl")


def install_values(etcd: EtcdSpec, bins: Sequence[str], extra: Mapping[str, object] | None = None) -> dict:
    """install.sh's values: `bins` of the pinned release (members; etcdctl alone on control planes)."""
    return {**(extra or {}), "ETCD_VERSION": etcd.version, "ETCD_BASE_URL": etcd.download_url,
            "ETCD_TARBALL": etcd.tarball, "ETCD_SHA256": etcd.sha256 or "", "ETCD_BINS": " ".join(bins),
            "ETCD_UPGRADE_FLOORS": versions.etcd_upgrade_floors()}


@dataclass(frozen=True)
class Face:
    """All that etcd hands the Kubernetes side: where the members answer;
    where a control plane keeps the client files its apiserver uses
    (kubeadm's paths); how a step runs etcdctl (a control plane installs it
    with `etcdctl_step`; a step on a member sources `libs` and uses
    etcdctl_hc with `member_pki_dir`); and what a step waits on, by the
    names INSTALLED, HEALTHY and RESTARTED, whose resources EtcdCluster
    hands realize (`EtcdCluster.waits`)."""
    endpoints: tuple[str, ...]
    install: Mapping[str, object]       # install.sh's values for etcdctl alone, of the members' release
    ca: str = payload.KUBEADM_ETCD_CA
    cert: str = payload.KUBEADM_ETCD_CERT
    key: str = payload.KUBEADM_ETCD_KEY
    member_pki_dir: str = payload.PKI_DIR
    libs: tuple[str, ...] = LIBS

    INSTALLED = "etcd installed"        # every member's install step (its upgrade check comes first)
    HEALTHY = "etcd healthy"            # the cluster's health gate
    RESTARTED = "etcd restarts done"    # the last member's restart: never mid-way through a rolling restart

    @classmethod
    def of(cls, spec: Spec) -> "Face":
        return cls(endpoints=tuple(spec.topology.etcd_client_endpoints),
                   install=install_values(spec.etcd, ("etcdctl",)))

    def etcdctl_step(self, name: str, node: str, after: tuple[str, ...]) -> Step:
        """etcdctl alone on a node that is no member (a control plane)."""
        return Step(name, node, HERE / "install.sh", self.install, libs=LIBS, after=after)


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


def timer_job(job: str, description: str, enabled: bool, calendar: str, disabled_note: str,
              script: Path, values: dict) -> tuple[dict, str]:
    """A scheduled job of every member (steps.job): its values and the
    script hakube-etcd-<job>.service runs (values, the installed etcd
    helpers, the job's own file)."""
    unit = f"hakube-etcd-{job}"
    return (steps.job(unit, description, calendar, enabled, f"hakube:etcd.{job}", disabled_note,
                      HERE / job / f"{unit}.service"),
            steps.job_body(script, values, libs=list(LIBS)))


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


def _bundle(*pems: str) -> str:
    return payload.cert_bundle(list(pems))


def _restart_payload(config: str, unit_text: str, version: str, *pems: str) -> str:
    return digest(*pems, config, unit_text, version)


def _not_after(server: str, peer: str) -> str:
    return f"server {server}, peer {peer}"


def _rclone(offsite: OffsiteSpec, secrets: Mapping[str, str] | None) -> str:
    return payload.rclone_config(offsite, secrets or {})


def _metrics_port(spec: Spec) -> int | None:
    """etcd's metrics listener, with monitoring on (the config and the restart digest both carry it)."""
    return spec.monitoring.etcd_port if spec.monitoring.enabled else None


def _member_setup(name: str, spec: Spec, member: str) -> list[Step]:
    """A member's steps up to its start. The certificates reach it through
    stdin only; the firewall step is there either way (with the firewall off
    it removes hakube's table: FIREWALL=0)."""
    etcd, topo, mon = spec.etcd, spec.topology, spec.monitoring
    node = topo.node(member)
    at = partial(Step, node=member, libs=LIBS)
    own = lambda step: f"{name}-{member}-{step}"  # noqa: E731
    file_values = {"MODE": "0644", "OWNER": "root:root"}
    pems = (CA, PEER_CA, *(member_source(member, w) for w in MEMBER_SOURCES[:4]), HEALTHCHECK_CERT, HEALTHCHECK_KEY)
    out = [
        at(own("prepare"), script=HERE / "prepare.sh",
           values={"PKI_DIR": payload.PKI_DIR, "ETCD_DATA_DIR": etcd.data_dir}, after=(READY,)),
        at(own("cluster"), script=steps.FILE, values={"DEST": payload.CLUSTER_FILE, **file_values},
           stdin=payload.cluster_env(topo), after=(own("prepare"),)),
        at(own("install"), script=HERE / "install.sh",
           values=install_values(etcd, member_bins(etcd), {"PKI_DIR": payload.PKI_DIR}), after=(own("cluster"),)),
        at(own("certs"), script=steps.PEM_FILES, values={"PEM_FILES": steps.pem_files_spec(payload.CERT_FILES)},
           stdin=Derived(pems, _bundle), secret=True, after=(own("prepare"),)),
        # after install: a refused upgrade leaves the running config alone too
        at(own("config"), script=steps.FILE, values={"DEST": payload.CONFIG_FILE, **file_values},
           stdin=payload.etcd_config_yaml(etcd, topo, node, metrics_port=_metrics_port(spec)), after=(own("install"),)),
        at(own("unit"), script=steps.UNIT, values={"UNIT": "etcd.service"}, stdin=unit_text(etcd),
           after=(own("install"),)),
    ]
    if etcd.tuning.fsync_check != "off":
        # before the member first starts: is the disk fast enough for etcd?
        out.append(at(own("disk-check"), script=HERE / "disk-check.sh", values={
            "ETCD_DATA_DIR": etcd.data_dir, "MODE": etcd.tuning.fsync_check,
            "FSYNC_LIMIT_MS": etcd.tuning.fsync_limit_ms, "FSYNC_COUNT": 200}, after=(own("prepare"),)))
    firewall_after = (own("cluster"),)
    if etcd.firewall:
        out.append(at(own("firewall-unit"), script=steps.UNIT, values={"UNIT": "hakube-etcd-firewall.service"},
                      stdin=(HERE / "firewall.service").read_text(), after=(own("prepare"),)))
        firewall_after += (own("firewall-unit"),)
    out.append(at(own("firewall"), script=HERE / "firewall.sh",
                  values={"PKI_DIR": payload.PKI_DIR, "FIREWALL": int(etcd.firewall)},
                  stdin=payload.firewall_ruleset(topo, node, mon) if etcd.firewall else "",
                  after=firewall_after, converge=True))
    return out


def unit_text(etcd: EtcdSpec) -> str:
    return payload.etcd_unit(etcd, (HERE / "etcd.service").read_text())


def _recover(name: str, spec: Spec) -> list[Step]:
    """Lost quorum (etcd.recover.from): a one-member cluster from the
    survivor's data, before any member starts or joins in this run (a
    rebuilt one then joins it). On the bare connection, without the
    machine id: the step runs when the key is added, and a later rebuild
    of that member does not run it again."""
    etcd = spec.etcd
    if etcd.recover is None:
        return []
    source, topo = etcd.recover.source, spec.topology
    node = topo.node(source)
    return [Step(f"{name}-recover-{source}", source, HERE / "recover.sh", {
        **gate_values(), "ETCD_DATA_DIR": etcd.data_dir, "ETCD_ENDPOINTS": ",".join(topo.etcd_client_endpoints),
        "MEMBER_NAME": source, "MEMBER_PEER_URL": node.peer_url, "MEMBER_CLIENT_URL": node.client_url,
        "ETCD_CONFIG_FILE": payload.CONFIG_FILE, "RECOVER_TOKEN": f"{etcd.cluster_token}-recovered"},
        libs=LIBS, gate=True,
        after=tuple(f"{name}-{source}-{s}" for s in ("install", "certs", "config", "unit", "firewall")))]


def _starts(name: str, spec: Spec, members: Sequence[str], made: set[str]) -> list[Step]:
    """Members start (or join) one after another, each once every
    member's firewall admits the whole membership. A bootstrapping member
    returns as soon as it listens (its quorum needs the later ones:
    Type=notify would deadlock); a joining one returns promoted and
    serving. Then each member's off-host remote and jobs. The off-host step
    is there either way: with etcd.backup.offsite unset it removes the
    remote's config (OFFSITE=0); a delete script would not do, it also runs
    when the step is replaced, after the new one's create."""
    backup, topo = spec.etcd.backup, spec.topology
    offsite_values = payload.offsite_values(backup.offsite) or {"OFFSITE": 0, "OFFSITE_DIR": payload.OFFSITE_DIR}
    offsite_stdin = Derived(OFFSITE_SECRETS, partial(_rclone, backup.offsite)) if backup.offsite else None
    jobs = scheduled_jobs(spec.etcd)
    # its certificates checked daily against their expiry (fails loudly)
    check_values, check_script = steps.cert_check(
        spec.stack, spec.pki.check_days, spec.pki.check_calendar,
        [f[0] for f in payload.CERT_FILES if not f[0].endswith(".key")])
    firewalls = tuple(f"{name}-{m}-firewall" for m in members)
    recover = (f"{name}-recover-{spec.etcd.recover.source}",) if spec.etcd.recover else ()
    out: list[Step] = []
    previous: tuple[str, ...] = ()
    for member in members:
        node, own = topo.node(member), (lambda step, m=member: f"{name}-{m}-{step}")
        start = Step(own("start"), member, HERE / "start.sh", {
            **membership_values(spec), "MEMBER_NAME": member, "MEMBER_PEER_URL": node.peer_url,
            "MEMBER_CLIENT_URL": node.client_url, "FIRST_MEMBER": members[0],
            "ETCD_CONFIG_FILE": payload.CONFIG_FILE}, libs=LIBS, converge=True,
            after=(*(own(s) for s in ("install", "certs", "config", "unit")), *firewalls, *previous,
                   *recover,
                   *((own("disk-check"),) if own("disk-check") in made else ())))
        previous = (start.name,)
        # the remote configured and answering before a snapshot counts on it
        out += [start, Step(own("offsite"), member, HERE / "backup" / "offsite.sh", offsite_values, libs=LIBS,
                            stdin=offsite_stdin, secret=backup.offsite is not None, after=(own("install"),))]
        out += [Step(own(job), member, steps.JOB, values, libs=LIBS, stdin=script, converge=True,
                     after=(start.name, own("offsite"))) for job, (values, script) in jobs.items()]
        out.append(Step(own("cert-check"), member, steps.JOB, check_values, stdin=check_script, converge=True,
                        after=(own("certs"),)))
    return out


def _restarts(name: str, spec: Spec, members: Sequence[str]) -> list[Step]:
    """Later changes of certs, config, unit or version: one member at a
    time, each waiting for a healthy cluster before and after. The payload
    digest is in the script's text, so a change is an *update* of this
    step (the real engine replaces a Command only for `triggers`, and a
    replacement runs `create`); restart.sh decides from what the member
    runs, so `create` and a re-run are safe. What a member restarts for:
    its certificates (a new key always comes with a new certificate, so no
    secret is needed), config (without initial-cluster*, which etcd reads
    only when a member is created, so a membership change alone restarts
    nobody), unit and version. CERTS_NOT_AFTER: what a person reads in a
    preview or review; the script does not use it."""
    etcd, topo = spec.etcd, spec.topology
    out, previous = [], f"{name}-health"
    for member in members:
        config = payload.etcd_config_yaml(etcd, topo, topo.node(member), membership=False,
                                          metrics_port=_metrics_port(spec))
        pems = (CA, PEER_CA, member_source(member, "server-cert"), member_source(member, "peer-cert"),
                HEALTHCHECK_CERT)
        out.append(Step(f"{name}-{member}-restart", member, HERE / "restart.sh", {
            **gate_values(), "ETCD_VERSION": etcd.version,
            "RESTART_PAYLOAD": Derived(pems, partial(_restart_payload, config, unit_text(etcd), etcd.version),
                                       secret=False),
            "CERTS_NOT_AFTER": Derived((member_source(member, "server-not-after"),
                                        member_source(member, "peer-not-after")), _not_after, secret=False)},
            libs=LIBS, update=True,
            after=(previous, *(f"{name}-{member}-{s}" for s in ("install", "certs", "config", "unit", "cluster")))))
        previous = out[-1].name
    return out


def plan(name: str, spec: Spec) -> list[Step]:
    """Every member's setup, the recovery, each start with its jobs, the
    health gate, the restart chain: in the order the state holds them
    (`pulumi destroy` reads it)."""
    members = [n.name for n in spec.topology.etcd]
    out = [s for m in members for s in _member_setup(name, spec, m)]
    out += _recover(name, spec)
    out += _starts(name, spec, members, {s.name for s in out})
    out.append(Step(f"{name}-health", members[0], HERE / "health.sh", membership_values(spec), libs=LIBS,
                    converge=True, after=tuple(f"{name}-{m}-start" for m in members)))
    return check(out + _restarts(name, spec, members))


def membership_plan(name: str, spec: Spec) -> list[Step]:
    """Remove the members the stack no longer configures (`member remove`,
    one at a time, refused when unsafe), once the restarts and the control
    planes (whose etcd endpoint lists drop them first) are done; then every
    member's firewall refreshed to the configured membership."""
    members = [n.name for n in spec.topology.etcd]
    first = spec.topology.node(members[0])
    out = [Step(f"{name}-membership", first.name, HERE / "membership.sh", {
        **membership_values(spec), "MEMBER_NAME": first.name, "MEMBER_PEER_URL": first.peer_url},
        libs=LIBS, after=(RESTARTS_DONE, CONTROL_PLANES_DONE))]
    if spec.etcd.firewall:
        out += [Step(f"{name}-{m}-firewall-refresh", m, HERE / "firewall.sh", {"PKI_DIR": payload.PKI_DIR,
                                                                                "REFRESH": 1},
                     stdin=payload.firewall_ruleset(spec.topology, spec.topology.node(m), spec.monitoring),
                     libs=LIBS, after=(out[0].name,)) for m in members]
    return check(out, (RESTARTS_DONE, CONTROL_PLANES_DONE))


# what the restore runs after that is not its own (realize's `outside`):
# everything settled first, and each member's off-host step (restore_offsite)
SETTLED = "settled"


def restore_offsite(member: str) -> str:
    return f"offsite of {member}"


def restore_plan(name: str, spec: Spec) -> list[Step | Copy]:
    """Restore every member from the one snapshot named in `etcd.restore`:
    copy it to every member (or have each fetch it from the off-host
    store), pause the apiservers (bootstrap mode), stop every member,
    restore the same snapshot everywhere with a fresh cluster token, start
    all, gate on cluster health, finish, resume the apiservers. Every name
    carries the snapshot's sha256: a run names one snapshot, a step that
    succeeded is not run again, and a failed run resumes where it failed
    (each script checks what it needs first). A step with an undo part
    runs that part of abandon.sh when the restore leaves the stack."""
    restore, topo = spec.etcd.restore, spec.topology
    sha = restore.sha256
    upload_dir, restore_dir = "/var/lib/hakube/upload", "/var/lib/hakube/restore"
    # a file of this machine is copied up by the provider; an off-host one,
    # fetched by each member into its own restore dir
    upload = f"{restore_dir}/fetched-{sha[:16]}.db" if restore.offsite else f"{upload_dir}/restore-{sha[:16]}.db"
    values = {"RESTORE_SHA": sha, "RESTORE_DIR": restore_dir, "RESTORE_UPLOAD": upload,
              "RESTORE_TOKEN": f"{spec.etcd.cluster_token}-restore-{sha[:8]}",
              "ETCD_DATA_DIR": spec.etcd.data_dir, "ETCD_INITIAL_CLUSTER": topo.etcd_initial_cluster,
              "ETCD_ENDPOINTS": ",".join(topo.etcd_client_endpoints), "PKI_DIR": payload.PKI_DIR,
              "WAIT_TRIES": WAIT_TRIES}
    members = [n.name for n in topo.etcd]
    apiservers = [n.name for n in topo.control_planes] if spec.kubernetes.bootstrap else []  # practice: none

    def run(node: str, step: str, after, script: str | None = None, undo: str | None = None, **extra) -> Step:
        return Step(f"{name}-{sha[:8]}-{node}-{step}", node, HERE / "restore" / f"{script or step}.sh",
                    {**values, **extra}, libs=LIBS, after=tuple(after),
                    delete=HERE / "restore" / "abandon.sh" if undo else None,
                    delete_values={**values, "PART": undo} if undo else {})

    names = lambda batch: [s.name for s in batch]  # noqa: E731
    if restore.offsite:
        copies: list = [run(m, "fetch", (SETTLED, restore_offsite(m)), RESTORE_NAME=restore.offsite,
                            **payload.offsite_values(spec.etcd.backup.offsite)) for m in members]
        out = list(copies)
    else:
        dirs = [run(m, "upload-dir", (SETTLED,), "upload", UPLOAD_DIR=upload_dir, UPLOAD_USER=spec.ssh.user)
                for m in members]
        copies = [Copy(f"{name}-{sha[:8]}-{m}-copy", m, restore.snapshot, upload, after=(d.name,))
                  for m, d in zip(members, dirs)]
        out = dirs + copies
    paused = [run(cp, "apiserver-stop", names(copies), "apiserver", undo="apiserver", ACTION="stop")
              for cp in apiservers]
    stopped = [run(m, "stop", names(copies + paused), undo="stop") for m in members]
    restored = [run(m, "data", names(stopped), undo="data", MEMBER_NAME=m,
                    MEMBER_PEER_URL=topo.node(m).peer_url, RESTORE_BUMP_REVISION=restore.bump_revision)
                for m in members]
    started = [run(m, "start", names(restored)) for m in members]
    gate = Step(f"{name}-{sha[:8]}-{members[0]}-health", members[0], HERE / "health.sh", values, libs=LIBS,
                after=tuple(names(started)))
    finished = [run(m, "finish", (gate.name,)) for m in members]
    resumed = [run(cp, "apiserver-start", names(finished), "apiserver", ACTION="start") for cp in apiservers]
    outside = (SETTLED, *(restore_offsite(m) for m in members))
    return check(out + paused + stopped + restored + started + [gate] + finished + resumed, outside)
