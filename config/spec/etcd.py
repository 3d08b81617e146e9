"""etcd: version and download, backups (local and off-host), restore, recovery, maintenance, tuning."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import versions
from ..reader import Section, parse_version, systemd_calendar


DEFAULT_CIPHERS = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
)


SUPPORTED_ETCD_MINORS = tuple(sorted(versions.ETCD_LINES))


END_OF_LIFE_ETCD_MINORS = tuple(m for m, row in sorted(versions.ETCD_LINES.items())
                                if row[0] == "end of life")


# etcd's disaster-recovery guide: bump by 1'000'000'000 "assuming that etcd
# runs with less than 1500 writes per second" (~7.7 days of writes between
# the snapshot and the restore).
DEFAULT_BUMP_REVISION = 1_000_000_000


DEFAULT_ETCD_VERSION = versions.etcd_default()            # the newest with pinned checksums


DEFAULT_ETCD_DOWNLOAD = "https://github.com/etcd-io/etcd/releases/download"


# The secret options of the off-host backup remote (rclone's names): set with
# `pulumi config set --secret --path 'hakube:etcdOffsiteSecrets.key_pem' ...`.
OFFSITE_SECRET_KEY = "etcdOffsiteSecrets"


# rclone's option names are lower-case words joined by '_' (`rclone help backend sftp`).
RCLONE_OPTION = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class OffsiteSpec:
    """Each verified snapshot also copied off the members, by the member that
    leads the cluster when the snapshot is taken, to an rclone remote (S3,
    SFTP, ... anything rclone speaks). Secret options of the remote come from
    the secret `hakube:etcdOffsiteSecrets`, never from here."""
    remote: tuple[tuple[str, str], ...]     # rclone options of the remote (type, host, user, ...)
    path: str                               # folder on the remote
    retention: int                          # off-host snapshots kept (all members together)
    known_hosts: str = ""                   # sftp: the server's host key(s), pinned

    @property
    def type(self) -> str:
        return dict(self.remote)["type"]


@dataclass(frozen=True)
class BackupSpec:
    """Scheduled `snapshot save` on every etcd member (a systemd timer)."""
    enabled: bool
    calendar: str                   # systemd OnCalendar= expression
    dir: str
    retention: int                  # snapshots kept per member
    offsite: OffsiteSpec | None = None


@dataclass(frozen=True)
class RestoreSpec:
    """Restore every member from one snapshot: a file on the machine running
    Pulumi (`snapshot`), or one in the off-host store (`offsite`, its name
    there), which every member fetches itself."""
    snapshot: str | None            # path as given
    sha256: str                     # of its content: names the restore, runs it once
    bump_revision: int = DEFAULT_BUMP_REVISION    # 0: none (etcdutl --bump-revision/--mark-compacted)
    offsite: str | None = None      # a snapshot's name in etcd.backup.offsite's folder


@dataclass(frozen=True)
class RecoverSpec:
    """Lost quorum: rebuild a one-member cluster from the data of the member
    that survived (`etcd --force-new-cluster`); the other members come back
    by `make rebuild`, each joining as a learner."""
    source: str                     # the surviving member's name


DEFAULT_BACKUP = BackupSpec(enabled=True, calendar="*-*-* 00/6:00:00", dir="/var/backups/etcd", retention=14)


@dataclass(frozen=True)
class MaintenanceSpec:
    """Per-member maintenance timer: defragmentation past a threshold, one
    member at a time (etcd's own lock), and alarms surfaced."""
    enabled: bool
    calendar: str                   # systemd OnCalendar= expression
    defrag_threshold: int           # percent of the db file not in use
    defrag_min_bytes: int           # smaller databases are left alone


DEFAULT_MAINTENANCE = MaintenanceSpec(enabled=True, calendar="*-*-* 03:30:00", defrag_threshold=50,
                                      defrag_min_bytes=100 * 1024**2)


@dataclass(frozen=True)
class TuningSpec:
    """etcd on a node of its own, as its tuning guide says: disk I/O ahead of
    everything else, optionally a CPU priority, and a disk fast enough."""
    io_class: str = "best-effort"     # systemd IOSchedulingClass= (ionice -c2)
    io_priority: int = 0              # IOSchedulingPriority= 0 (highest) .. 7
    nice: int = 0                     # Nice= (0: not set)
    fsync_check: str = "warn"         # before a member first starts: warn | refuse | off
    fsync_limit_ms: int = 10          # etcd's guidance for WAL fsync


@dataclass(frozen=True)
class EtcdSpec:
    version: str
    minor: int
    download_url: str
    sha256: str | None
    arch: str
    cluster_token: str
    heartbeat_interval_ms: int
    election_timeout_ms: int
    quota_backend_bytes: int
    snapshot_count: int
    auto_compaction_mode: str
    auto_compaction_retention: str
    cipher_suites: tuple[str, ...]
    firewall: bool
    backup: BackupSpec = DEFAULT_BACKUP
    restore: RestoreSpec | None = None
    maintenance: MaintenanceSpec = DEFAULT_MAINTENANCE
    recover: RecoverSpec | None = None
    data_dir: str = "/var/lib/etcd"
    tuning: TuningSpec = TuningSpec()

    @property
    def tarball(self) -> str:
        return f"etcd-v{self.version}-linux-{self.arch}.tar.gz"

    @property
    def has_etcdutl(self) -> bool:
        return self.minor >= 5


def _etcd(s: Section, stack: str) -> EtcdSpec:
    version = s.string("version", DEFAULT_ETCD_VERSION)
    allow_eol = s.boolean("allowEndOfLife", False)
    minor = 6
    try:
        major, minor, _ = parse_version(version)
        if major != 3 or minor not in SUPPORTED_ETCD_MINORS:
            s.problems.add(s.key("version"), f"{version}: supported etcd releases are "
                           + ", ".join(f"3.{m}.x" for m in SUPPORTED_ETCD_MINORS)
                           + " (config/versions.py; `make versions`)")
        elif minor in END_OF_LIFE_ETCD_MINORS and allow_eol is not True:
            s.problems.add(s.key("version"), f"{version}: etcd 3.{minor} is end of life. A cluster that "
                           f"runs it is upgraded in place, one member at a time: set 3.{minor + 1}.x "
                           f"(e.g. {versions.newest_pinned(minor + 1) or f'3.{minor + 1}.x'}). To keep running 3.{minor} until then, "
                           "set hakube:etcd.allowEndOfLife: true")
    except (ValueError, TypeError) as exc:
        s.problems.add(s.key("version"), f"{version!r} is not a version ({exc})")
    url = s.string("downloadUrl", DEFAULT_ETCD_DOWNLOAD)
    if isinstance(url, str) and not re.match(r"^https?://\S+$", url):
        s.problems.add(s.key("downloadUrl"), f"{url!r} is not an http(s) URL")
    sha = s.string("sha256", None)
    if sha is not None and not re.match(r"^[0-9a-f]{64}$", sha):
        s.problems.add(s.key("sha256"), "expected 64 lower-case hex digits (the tarball's sha256)")
    arch = s.choice("arch", "amd64", ("amd64", "arm64"))
    if sha is None and isinstance(version, str):
        # the release's sha256 pinned in hakube (from its own source, not a
        # SHA256SUMS fetched at run time), when hakube has a row for it
        sha = versions.etcd_sha256(version.lstrip("v"), arch)
    token = s.string("clusterToken", f"hakube-{stack}")
    heartbeat = s.integer("heartbeatIntervalMs", 100, 10, 5000)
    election = s.integer("electionTimeoutMs", 1000, 50, 50000)
    if isinstance(heartbeat, int) and isinstance(election, int) and election < 5 * heartbeat:
        s.problems.add(s.key("electionTimeoutMs"), f"{election} must be at least 5x "
                       f"heartbeatIntervalMs ({heartbeat}); etcd refuses to start otherwise "
                       "(10x is recommended)")
    quota = s.integer("quotaBackendBytes", 2 * 1024**3, 64 * 1024**2, 8 * 1024**3)
    snapshot = s.integer("snapshotCount", 10000, 100, 10_000_000)
    mode = s.choice("autoCompactionMode", "periodic", ("periodic", "revision"))
    retention = s.string("autoCompactionRetention", "1h" if mode == "periodic" else "10000")
    pattern = r"^\d+(h|m|s)?$" if mode == "periodic" else r"^\d+$"
    if isinstance(retention, str) and not re.match(pattern, retention):
        s.problems.add(s.key("autoCompactionRetention"), f"{retention!r} does not fit mode {mode} "
                       "(periodic: a duration such as 1h or 30m; revision: a count)")
    ciphers = s.string_list("cipherSuites", list(DEFAULT_CIPHERS))
    firewall = s.boolean("firewall", True)
    backup = _backup(s.section("backup"))
    maintenance = _maintenance(s.section("maintenance"))
    restore = _restore(s.section("restore"), backup.offsite) if s.has("restore") else None
    recover = _recover(s.section("recover")) if s.has("recover") else None
    if restore and recover:
        s.problems.add(s.key("recover"), "a restore and a recovery in the same run: recover (from a "
                       "surviving member) or restore (from a snapshot), and remove the other key")
    tuning = _tuning(s.section("tuning"))
    s.finish()
    return EtcdSpec(version=str(version).lstrip("v"), minor=minor, download_url=str(url).rstrip("/"),
                    sha256=sha, arch=arch, cluster_token=token, heartbeat_interval_ms=heartbeat,
                    election_timeout_ms=election, quota_backend_bytes=quota, snapshot_count=snapshot,
                    auto_compaction_mode=mode, auto_compaction_retention=retention,
                    cipher_suites=tuple(ciphers), firewall=firewall, backup=backup, restore=restore,
                    maintenance=maintenance, tuning=tuning, recover=recover)


def _tuning(s: Section) -> TuningSpec:
    d = TuningSpec()
    io_class = s.choice("ioClass", d.io_class, ("best-effort", "realtime", "idle"))
    io_priority = s.integer("ioPriority", d.io_priority, 0, 7)
    nice = s.integer("nice", d.nice, -20, 19)
    check = s.choice("fsyncCheck", d.fsync_check, ("warn", "refuse", "off"))
    limit = s.integer("fsyncLimitMs", d.fsync_limit_ms, 1, 1000)
    s.finish()
    return TuningSpec(io_class=io_class, io_priority=io_priority, nice=nice, fsync_check=check,
                      fsync_limit_ms=limit)


def _restore(s: Section, offsite: "OffsiteSpec | None") -> RestoreSpec | None:
    path = s.string("snapshot", None)
    name = s.string("offsite", None)
    pinned = s.string("sha256", None)
    bump = s.integer("bumpRevision", DEFAULT_BUMP_REVISION, 0, 2**62)
    s.finish()
    bump = bump if isinstance(bump, int) else DEFAULT_BUMP_REVISION
    if path and name:
        s.problems.add(s.key("offsite"), "name one snapshot: a file on this machine (snapshot) or one "
                       "in the off-host store (offsite), not both")
        return None
    if name:
        if offsite is None:
            s.problems.add(s.key("offsite"), "restoring from the off-host store needs "
                           "hakube:etcd.backup.offsite (the remote it is in)")
        if not re.match(r"^etcd-[A-Za-z0-9.-]+-\d{8}T\d{6}Z\.db$", name):
            s.problems.add(s.key("offsite"), f"{name!r} is not the name of an off-host snapshot "
                           "(etcd-<member>-<UTC time>.db, as `make backups` lists them)")
        if not isinstance(pinned, str) or not re.match(r"^[0-9a-f]{64}$", pinned):
            s.problems.add(s.key("sha256"), "required with offsite: the snapshot's sha256 (64 hex "
                           "digits), from `make backups` or the .sha256 file next to it; it names "
                           "exactly what is restored, and every member checks its copy against it")
            return None
        return RestoreSpec(snapshot=None, offsite=name, sha256=pinned, bump_revision=bump)
    if not path:
        s.problems.add(s.key("snapshot"), "required: a snapshot file on this machine, e.g. one copied "
                       "from a member's backup dir (scp etcd-01:/var/backups/etcd/latest.db .), or "
                       "offsite: <name> for one in the off-host store")
        return None
    try:
        digest = hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    except OSError as exc:
        s.problems.add(s.key("snapshot"), f"cannot read {path!r} ({exc.strerror}); the file is read "
                       "on the machine that runs pulumi")
        return None
    if pinned is not None and pinned != digest:
        s.problems.add(s.key("sha256"), f"{path} has sha256 {digest}, not {pinned}: not restoring it")
        return None
    return RestoreSpec(snapshot=str(Path(path).expanduser()), sha256=digest, bump_revision=bump)


def _recover(s: Section) -> RecoverSpec | None:
    source = s.string("from", None)
    s.finish()
    if not isinstance(source, str) or not source:
        s.problems.add(s.key("from"), "required: the member whose data survived (e.g. etcd-01); "
                       "see README 'Lost quorum'")
        return None
    return RecoverSpec(source=source)


def _offsite(s: Section) -> OffsiteSpec | None:
    before = len(s.problems.items)
    remote = s.mapping("remote")
    path = s.string("path", None)
    retention = s.integer("retention", 28, 1, 100_000)
    known_hosts = s.string("knownHosts", "")
    s.finish()
    options: list[tuple[str, str]] = []
    if not isinstance(remote, dict) or not remote.get("type"):
        s.problems.add(s.key("remote"), "required: the rclone remote's options, as `rclone config` "
                       "writes them, e.g. {type: sftp, host: backup.example, user: etcd} or {type: s3, "
                       "provider: AWS, region: eu-west-1, access_key_id: ...}; its secret options go in "
                       f"the secret hakube:{OFFSITE_SECRET_KEY}")
        return None
    for key, value in sorted(remote.items()):
        if not isinstance(key, str) or not RCLONE_OPTION.match(key):
            s.problems.add(s.key("remote"), f"{key!r} is not an rclone option name (lower-case, '_')")
        elif isinstance(value, bool):
            options.append((key, "true" if value else "false"))
        elif not isinstance(value, (str, int)) or "\n" in str(value) or str(value) != str(value).strip():
            s.problems.add(s.key(f"remote.{key}"), "expected one line of text or a number")
        elif key in OFFSITE_SECRET_OPTIONS:
            s.problems.add(s.key(f"remote.{key}"), f"a secret in plain stack config: move it to the secret "
                           f"hakube:{OFFSITE_SECRET_KEY} (pulumi config set --secret --path "
                           f"'hakube:{OFFSITE_SECRET_KEY}.{key}' ...)")
        else:
            options.append((key, str(value)))
    if not isinstance(path, str) or not re.match(r"^[A-Za-z0-9._/-]+$", path) or ".." in path.split("/"):
        s.problems.add(s.key("path"), f"{path!r}: required, the folder on the remote for this stack's "
                       "snapshots (letters, digits, . _ - /), e.g. etcd/prod")
    kind = dict(options).get("type", "")
    if kind == "sftp" and not (isinstance(known_hosts, str) and known_hosts.strip()):
        s.problems.add(s.key("knownHosts"), "required for sftp: the server's host key line(s), pinned "
                       "(ssh-keyscan -t ed25519 <host>); a snapshot holds every Secret of the cluster")
    if isinstance(known_hosts, str) and known_hosts.strip():
        for line in known_hosts.strip().splitlines():
            if len(line.split()) < 3:
                s.problems.add(s.key("knownHosts"), f"{line!r} is not a known_hosts line "
                               "(<host> <key type> <base64 key>)")
    if len(s.problems.items) > before:
        return None
    return OffsiteSpec(remote=tuple(options), path=path.strip("/"), retention=retention,
                       known_hosts=known_hosts.strip() + "\n" if known_hosts.strip() else "")


# rclone options that are credentials (`rclone help backend <type>`: those
# rclone's own config marks as sensitive); refused in plain stack config.
OFFSITE_SECRET_OPTIONS = ("pass", "key_pem", "key_file_pass", "secret_access_key", "session_token",
                          "account_key", "sas_url", "client_secret", "token", "password", "key",
                          "service_account_credentials", "application_key", "api_key")


def offsite_secrets(value: Any) -> tuple[dict[str, str], list[str]]:
    """The secret options of the off-host remote (hakube:etcdOffsiteSecrets),
    checked; returns (options, problems). key_pem is the one multi-line
    value: rclone reads it with its line ends written as \\n."""
    problems: list[str] = []
    if value is None:
        return {}, problems
    if not isinstance(value, dict):
        return {}, [f"hakube:{OFFSITE_SECRET_KEY}: expected an object of rclone options (e.g. "
                    "{\"key_pem\": \"...\"}), got " + type(value).__name__]
    out: dict[str, str] = {}
    for key, item in sorted(value.items()):
        where = f"hakube:{OFFSITE_SECRET_KEY}.{key}"
        if not isinstance(key, str) or not RCLONE_OPTION.match(key):
            problems.append(f"{where}: not an rclone option name (lower-case, '_')")
        elif not isinstance(item, str) or not item.strip():
            problems.append(f"{where}: expected text")
        elif key == "key_pem":
            out[key] = item.strip().replace("\n", "\\n")
        elif "\n" in item:
            problems.append(f"{where}: one line expected (only key_pem may hold several)")
        else:
            out[key] = item
    return out, problems


def _maintenance(s: Section) -> MaintenanceSpec:
    d = DEFAULT_MAINTENANCE
    enabled = s.boolean("enabled", d.enabled)
    calendar = systemd_calendar(s, d.calendar)
    threshold = s.integer("defragThreshold", d.defrag_threshold, 1, 99)
    min_bytes = s.integer("defragMinBytes", d.defrag_min_bytes, 0, 64 * 1024**3)
    s.finish()
    return MaintenanceSpec(enabled=enabled, calendar=calendar, defrag_threshold=threshold,
                           defrag_min_bytes=min_bytes)


def _backup(s: Section) -> BackupSpec:
    d = DEFAULT_BACKUP
    enabled = s.boolean("enabled", d.enabled)
    calendar = systemd_calendar(s, d.calendar)
    directory = s.string("dir", d.dir)
    if isinstance(directory, str) and (not re.match(r"^/[A-Za-z0-9._/-]*$", directory) or directory.rstrip("/") in
                                       ("", "/var/lib/etcd") or ".." in directory):
        s.problems.add(s.key("dir"), f"{directory!r} must be an absolute path of its own "
                       "(not / and not etcd's data dir)")
    retention = s.integer("retention", d.retention, 1, 1000)
    offsite = _offsite(s.section("offsite")) if s.has("offsite") else None
    s.finish()
    if offsite and not enabled:
        s.problems.add(s.key("offsite"), "copies the scheduled snapshots off-host: it needs "
                       "etcd.backup.enabled true")
    return BackupSpec(enabled=enabled, calendar=calendar, dir=str(directory).rstrip("/"), retention=retention,
                      offsite=offsite)
