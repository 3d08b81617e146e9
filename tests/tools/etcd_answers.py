"""Record what real etcd answers, for the tests of the decisions a node makes
from them (components/steps/etcd_decide.py), so those tests run without a cluster
on answers no one typed.

Each release runs a 3-member cluster on loopback (plain HTTP: the answers are
the same bodies over TLS) and is walked through the states a decision reads:

- forming:    one member of three started alone (no quorum: the cluster has
              not decided its version, and the client port answers nothing);
- undecided:  two members formed the quorum before the third started, as a
              stack's members start one after another. The leader's first
              look at its members could not reach the third, so etcd set the
              cluster version to its floor, 3.0.0, and keeps it until its next
              look (every few seconds). Recorded while that lasts;
- voters:     all three running, the cluster version decided;
- learner:    a fourth member added as a learner (`member add --learner`)
              and not started yet (no name, no client URLs), then removed;
- one-down:   one member stopped.

Each state's answers, exactly as printed, go to
tests/unit/etcd_answers/v<version>/<state>.<answer>.json: `version` (the
client port's /version body of a member that is up) and `status`
(`etcdctl endpoint status -w json` over the three endpoints), `members`
(`etcdctl member list -w json`), and in `forming` the peer port's /version
(`peer-version`). An answer not given is an empty file.

    python -m tests.tools.etcd_answers [VERSION ...]    (default: every release here)
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.tools import etcd_release

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "unit" / "etcd_answers"
HOST = "127.0.0.1"


def _port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def binaries() -> dict[str, Path]:
    """version -> directory with etcd and etcdctl: the releases `make tools`
    built, and upstream 3.5.1 (below the 3.5.32 floor)."""
    out = {v: etcd_release.built_bin(v) for v in etcd_release.built_versions()}
    old = ROOT / ".lab" / "etcd-bin" / "v3.5.1"
    if (old / "etcd").exists():
        out["3.5.1"] = old
    return out


class Cluster:
    def __init__(self, bin_dir: Path, work: Path):
        self.bin, self.work = bin_dir, work
        self.names = ["etcd-01", "etcd-02", "etcd-03"]
        self.client = {n: f"http://{HOST}:{_port()}" for n in self.names}
        self.peer = {n: f"http://{HOST}:{_port()}" for n in self.names}
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        initial = ",".join(f"{n}={self.peer[n]}" for n in self.names)
        log = open(self.work / f"{name}.log", "a")
        self.procs[name] = subprocess.Popen(
            [str(self.bin / "etcd"), "--name", name, "--data-dir", str(self.work / name),
             "--listen-client-urls", self.client[name], "--advertise-client-urls", self.client[name],
             "--listen-peer-urls", self.peer[name], "--initial-advertise-peer-urls", self.peer[name],
             "--initial-cluster", initial, "--initial-cluster-state", "new",
             "--initial-cluster-token", "hakube-answers"], stdout=log, stderr=subprocess.STDOUT)

    def stop(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.terminate()
            p.wait(timeout=20)

    def version(self, name: str, peer: bool = False) -> str:
        try:
            with urllib.request.urlopen(f"{(self.peer if peer else self.client)[name]}/version", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return ""

    def status(self) -> str:
        res = subprocess.run([str(self.bin / "etcdctl"), "--endpoints=" + ",".join(self.client.values()),
                              "--dial-timeout=1s", "--command-timeout=2s", "endpoint", "status", "-w", "json"],
                             capture_output=True, text=True)
        return res.stdout

    def etcdctl(self, *args: str) -> str:
        res = subprocess.run([str(self.bin / "etcdctl"), "--endpoints=" + ",".join(self.client.values()),
                              "--dial-timeout=1s", "--command-timeout=2s", *args], capture_output=True, text=True)
        return res.stdout

    def members(self) -> str:
        return self.etcdctl("member", "list", "-w", "json")

    def until(self, what: str, cond, limit: float = 30.0, every: float = 0.05) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if cond():
                return
            time.sleep(every)
        raise RuntimeError(f"etcd {self.bin}: not {what} after {limit} s")


def _cluster_version(body: str) -> str:
    try:
        return json.loads(body).get("etcdcluster", "")
    except ValueError:
        return ""


def record(version: str, bin_dir: Path) -> list[str]:
    out = OUT / f"v{version}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    written = []

    def save(state: str, **answers: str) -> None:
        for answer, text in answers.items():
            (out / f"{state}.{answer}.json").write_text(text if not text or text.endswith("\n") else text + "\n")
            written.append(f"v{version}/{state}.{answer}.json")

    with tempfile.TemporaryDirectory() as tmp:
        c = Cluster(bin_dir, Path(tmp))
        try:
            c.start("etcd-01")
            # Alone, a bootstrap member serves only its peer port: its client
            # port, where the steps ask, answers nothing at all.
            c.until("answering /version on its peer port", lambda: c.version("etcd-01", peer=True))
            save("forming", version=c.version("etcd-01"), status=c.status(), members=c.members(),
                 **{"peer-version": c.version("etcd-01", peer=True)})
            c.start("etcd-02")
            c.until("deciding its placeholder version", lambda: _cluster_version(c.version("etcd-01")) == "3.0.0")
            c.start("etcd-03")
            c.until("serving all three endpoints", lambda: len(json.loads(c.status() or "[]")) == 3)
            body = c.version("etcd-01")
            if _cluster_version(body) != "3.0.0":
                raise RuntimeError(f"etcd {version}: the cluster version moved on before it was recorded: {body}")
            save("undecided", version=body, status=c.status(), members=c.members())
            c.until("deciding its version", lambda: _cluster_version(c.version("etcd-01")) not in ("", "3.0.0",
                                                                                                 "not_decided"))
            save("voters", version=c.version("etcd-01"), status=c.status(), members=c.members())
            # refused as "unhealthy cluster" until the leader has heard every
            # member for a few seconds (etcd's strict reconfiguration check)
            peer, added = f"http://{HOST}:{_port()}", {}

            def add() -> bool:
                added.update(json.loads(c.etcdctl("member", "add", "etcd-04", "--learner", "-w", "json",
                                                  f"--peer-urls={peer}") or "{}"))
                return bool(added.get("member"))
            c.until("adding a learner", add, every=0.5)
            save("learner", members=c.members())
            c.etcdctl("member", "remove", format(added["member"]["ID"], "x"))
            c.until("forgetting the learner", lambda: len(json.loads(c.members() or "{}").get("members", [])) == 3)
            c.stop("etcd-03")
            c.until("seeing a member down", lambda: len(json.loads(c.status() or "[]")) == 2)
            save("one-down", version=c.version("etcd-01"), status=c.status(), members=c.members())
        finally:
            for n in list(c.procs):
                c.stop(n)
    return written


def main(argv: list[str]) -> int:
    have = binaries()
    for v in argv or sorted(have, key=lambda v: tuple(int(x) for x in v.split("."))):
        if v not in have:
            print(f"etcd {v} is not here (make tools; make lab-releases for 3.5.1)", file=sys.stderr)
            return 1
        for f in record(v, have[v]):
            print(f"wrote tests/unit/etcd_answers/{f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
