"""Run a command over real SSH with a `remote.Command` connection.

What the command provider does, done with OpenSSH: log in as the
connection's user with its private key, trust only its pinned host key, feed
`stdin`, return stdout/stderr/exit status. Dialing is retried like the
provider does (`dial_error_limit` tries of `per_dial_timeout` seconds), and
only dialing: once a session is open, the command runs exactly once.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# ssh exits 255 for its own errors; these are the ones that mean "not up yet".
DIAL_ERRORS = re.compile(r"Connection refused|Connection timed out|No route to host|"
                         r"Connection closed by|Connection reset|kex_exchange_identification|"
                         r"Network is unreachable|port 22: Operation timed out|"
                         r"System is booting up")        # pam_nologin until boot completes


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    dials: int
    seconds: float


class SshError(RuntimeError):
    pass


class Ssh:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)

    def _file(self, kind: str, content: str) -> Path:
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.workdir / f"{kind}-{hashlib.sha256(content.encode()).hexdigest()[:16]}"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(content)
            os.chmod(tmp, 0o600)
            tmp.rename(path)
        return path

    def argv(self, conn: dict, command: str | None = None) -> list[str]:
        host, user = conn["host"], conn.get("user") or "root"
        port = int(conn.get("port") or 22)
        if not conn.get("hostKey"):
            raise SshError(f"{host}: the connection pins no host key; the lab refuses to trust on first use")
        key = self._file("key", conn["privateKey"].rstrip("\n") + "\n")
        known = self._file("known_hosts", f"[{host}]:{port} {conn['hostKey'].strip()}\n" if port != 22
                           else f"{host} {conn['hostKey'].strip()}\n")
        argv = ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(port),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
                # LogLevel stays at INFO: "Connection closed by ... port 22" (sshd
                # restarted by cloud-init mid-handshake) is logged at INFO, and
                # it is how a dial error is told from a command's exit 255.
                "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=INFO",
                "-o", f"ConnectTimeout={int(conn.get('perDialTimeout') or 15)}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                f"{user}@{host}"]
        if command is not None:
            argv += ["--", command]
        return argv

    def start(self, conn: dict, command: str) -> subprocess.Popen:
        """The command started in the background (its stdout a pipe), with
        the same pinned connection; no dial retries (the host is up)."""
        return subprocess.Popen(self.argv(conn, command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)

    def run(self, conn: dict, command: str, stdin: str | None = None, timeout: float = 900) -> Result:
        # the provider's dialWithRetry (pulumi-command v1.2.1 remote/connection.go:150-187):
        # a dial error ends it once more than dialErrorLimit dials failed, so limit + 1 dials
        limit = int(conn.get("dialErrorLimit") or 10) + 1
        started = time.monotonic()
        for dial in range(1, limit + 1):
            try:
                proc = subprocess.run(self.argv(conn, command), input=stdin or "",
                                      capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired as err:
                raise SshError(f"{conn['host']}: command still running after {timeout:.0f} s") from err
            if proc.returncode == 255 and DIAL_ERRORS.search(proc.stderr) and dial < limit:
                # and its wait between dials: pulumi's retry.Until defaults (sdk/go/common/util/
                # retry/until.go: 100 ms, times 1.5 after each, at most 5 s)
                time.sleep(min(5.0, 0.1 * 1.5 ** (dial - 1)))
                continue
            return Result(proc.returncode, proc.stdout, proc.stderr, dial, time.monotonic() - started)
        raise AssertionError("unreachable")
