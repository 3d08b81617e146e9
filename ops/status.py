"""`make status STACK=...`: the running stack on one screen, read live over
SSH with what the stack's outputs hold (node addresses, the admin key, the
pinned host keys, which node has which role). Problems first, in words;
exit status 1 when there is one (for cron or CI), 0 when none, 2 when the
outputs cannot be read. `--json` prints the same as data.

    pulumi stack output --json --show-secrets | python -m ops.status --outputs -

Reads only: each node runs components/steps/probe.py as root and prints what it has.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from components.steps import PROBE

# etcd's docs: a follower more than this many entries behind is worth a look
LAG_ENTRIES = 1000
CERT_DAYS = 30
DB_QUOTA_FRACTION = 0.8


@dataclass
class Status:
    stack: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    members: list[dict] = field(default_factory=list)
    backups: list[dict] = field(default_factory=list)
    offsite: dict = field(default_factory=dict)       # the newest off-host copy, when etcd.backup.offsite is set
    certificates: list[dict] = field(default_factory=list)
    load_balancers: list[dict] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"stack": self.stack, "ok": not self.problems, "problems": self.problems, "notes": self.notes,
                "etcd": self.members, "backups": self.backups, "offsite": self.offsite,
                "certificates": self.certificates,
                "loadBalancers": self.load_balancers, "unreachable": self.unreachable}


@contextlib.contextmanager
def ssh_to(outputs: dict):
    """A function (node, remote command) -> ssh argv, with the stack's admin
    key and pinned host keys in a private temporary directory while open."""
    ips, user = outputs["nodeIps"], outputs["sshUser"]
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "key"
        key.write_text(outputs["sshPrivateKey"])
        key.chmod(0o600)
        known = Path(tmp) / "known_hosts"
        known.write_text(outputs["knownHosts"])

        def argv(node: str, command: str) -> list[str]:
            return ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
                    "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes",
                    f"{user}@{ips[node]}", command]
        yield argv


def probe_all(outputs: dict, timeout: float = 40) -> dict[str, dict]:
    """node -> what its probe printed, or {"error": ...}: every node at once, over SSH."""
    script = PROBE.read_text()
    with ssh_to(outputs) as argv:
        def one(node: str) -> tuple[str, dict]:
            try:
                p = subprocess.run(argv(node, "sudo -n python3 -"), input=script, capture_output=True, text=True,
                                   timeout=timeout)
            except subprocess.TimeoutExpired:
                return node, {"error": f"no answer within {timeout:.0f} s"}
            if p.returncode != 0:
                return node, {"error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]}
            try:
                return node, json.loads(p.stdout)
            except json.JSONDecodeError:
                return node, {"error": "its probe printed no status"}
        with ThreadPoolExecutor(max_workers=min(16, len(outputs["nodeIps"]))) as pool:
            return dict(pool.map(one, list(outputs["nodeIps"])))


def read_outputs(source: str, what: str) -> dict:
    """The stack's outputs (JSON, `-`: stdin) with the secrets SSH needs; raises ValueError saying why not."""
    up = "run `make up` for it first (or give the stack with STACK=<name>)"
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as err:
        raise ValueError(f"{what}: cannot read the stack's outputs from {source} ({err.strerror})") from None
    if not text.strip():
        raise ValueError(f"{what}: the stack has no outputs (pulumi stack output printed nothing): {up}")
    try:
        outputs = json.loads(text)
    except ValueError:
        raise ValueError(f"{what}: what pulumi stack output printed is not the stack's outputs "
                         f"({text.strip()[:200]!r}): {up}") from None
    missing = [k for k in ("nodeIps", "sshUser", "sshPrivateKey", "knownHosts") if k not in outputs]
    if missing:
        raise ValueError(f"{what}: the stack's outputs lack {', '.join(missing)}: is this a hakube stack "
                         f"that `pulumi up` finished? {up}")
    if "[secret]" in str(outputs["sshPrivateKey"]):
        raise ValueError(f"{what}: sshPrivateKey is hidden: read the outputs with --show-secrets")
    return outputs


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def analyse(outputs: dict, seen: dict[str, dict], now: float | None = None, stack: str = "") -> Status:
    """What the probes saw, in words: problems (something is wrong or soon
    will be) and notes."""
    now = time.time() if now is None else now
    summary = outputs.get("summary") or {}
    members = (summary.get("etcd") or {}).get("members") or [n for n in outputs["nodeIps"] if n.startswith("etcd-")]
    lbs = summary.get("loadBalancers") or [n for n in outputs["nodeIps"] if n.startswith("lb-")]
    st = Status(stack=stack)
    for node, got in seen.items():
        if "error" in got:
            st.unreachable[node] = got["error"]
            st.problems.append(f"{node} cannot be read: {got['error']}")
    # etcd
    statuses = {}
    for m in members:
        e = seen.get(m, {}).get("etcd")
        if e is None:
            continue
        if "status" not in e:
            error = (e.get("error", "").strip().splitlines() or [""])[-1]
            st.problems.append(f"{m}: etcd does not answer ({e.get('active', '?')}: {error})")
            st.members.append({"name": m, "error": e.get("error", ""), "active": e.get("active")})
            continue
        statuses[m] = e
    leaders = {e["status"]["leader"] for e in statuses.values() if e["status"]["leader"] != "0"}
    by_id = {e["status"]["memberId"]: m for m, e in statuses.items()}
    leader = by_id.get(next(iter(leaders))) if len(leaders) == 1 else None
    if statuses and not leaders:
        st.problems.append("etcd has no leader: no member can write")
    elif len(leaders) > 1:
        st.problems.append("etcd members disagree on the leader: " + ", ".join(sorted(by_id.get(x, x) for x in leaders)))
    top = statuses[leader]["status"]["raftIndex"] if leader else max(
        (e["status"]["raftIndex"] for e in statuses.values()), default=0)
    for m, e in statuses.items():
        s = e["status"]
        behind = max(0, top - s["raftIndex"])
        role = "leader" if m == leader else ("learner" if s["isLearner"] else "follower")
        row = {"name": m, "id": s["memberId"], "role": role, "version": s["version"], "dbSize": s["dbSize"],
               "dbSizeInUse": s["dbSizeInUse"], "raftIndex": s["raftIndex"], "behind": behind,
               "alarms": e.get("alarms", []), "quotaBytes": e.get("quotaBytes")}
        st.members.append(row)
        if behind > LAG_ENTRIES:
            st.problems.append(f"{m} is {behind} entries behind the leader")
        for alarm in e.get("alarms", []):
            st.problems.append(f"{m}: etcd alarm {alarm} (README: maintenance)")
        if s["errors"]:
            st.problems.append(f"{m}: etcd reports " + "; ".join(s["errors"]))
        if s["isLearner"]:
            st.notes.append(f"{m} is a learner (not voting): a join that has not finished")
        quota = e.get("quotaBytes")
        if quota and s["dbSize"] > DB_QUOTA_FRACTION * quota:
            st.problems.append(f"{m}: its database is {_size(s['dbSize'])}, {100 * s['dbSize'] / quota:.0f} % of "
                               f"its quota ({_size(quota)}): defragment or compact before writes are refused")
    versions = {e["status"]["version"] for e in statuses.values()}
    if len(versions) > 1:
        st.notes.append("etcd members run different versions: " + ", ".join(sorted(versions)))
    # backups
    for m in members:
        b = (seen.get(m, {}).get("etcd") or {}).get("backups")
        if b is None:
            continue
        row = {"name": m, **b}
        st.backups.append(row)
        if not b.get("enabled"):
            st.notes.append(f"{m}: no backup timer (etcd.backup.enabled is false)")
            continue
        interval = b.get("intervalSeconds")
        if "newestTime" not in b:
            st.problems.append(f"{m}: no backup yet in {b['dir']}")
        else:
            age = now - b["newestTime"]
            row["ageSeconds"] = age
            if interval and age > 2 * interval + 300:
                st.problems.append(f"{m}: no backup for {_age(age)} (the timer runs every {_age(interval)})")
        if b.get("lastResult") not in ("success", "", None):
            st.problems.append(f"{m}: the last backup run failed ({b['lastResult']}): journalctl -u hakube-etcd-backup")
    # off-host copies: made by whichever member led at each snapshot, so the
    # newest record of any member is the store's newest copy
    records = [b["offsite"] for b in st.backups if b.get("enabled") and b.get("offsite")]
    if records:
        done = [r for r in records if "time" in r]
        newest = max(done, key=lambda r: r["time"]) if done else None
        intervals = [b["intervalSeconds"] for b in st.backups if b.get("intervalSeconds")]
        interval = min(intervals) if intervals else None
        st.offsite = {"url": records[0]["url"], **(newest or {})}
        if newest is None:
            st.problems.append(f"no off-host copy yet in {records[0]['url']} (the leader copies each snapshot): "
                               "journalctl -t hakube-etcd-backup on the leader")
        else:
            age = now - newest["time"]
            st.offsite["ageSeconds"] = age
            if interval and age > 2 * interval + 300:
                st.problems.append(f"no off-host copy for {_age(age)} in {records[0]['url']} (snapshots every "
                                   f"{_age(interval)}): journalctl -t hakube-etcd-backup on the leader")
    # certificates
    for node, got in sorted(seen.items()):
        for c in got.get("certificates", []):
            left = c["notAfter"] - now
            st.certificates.append({"node": node, **c, "daysLeft": int(left // 86400)})
            if left < 0:
                st.problems.append(f"{node}: certificate {c['path']} expired {_age(-left)} ago")
            elif left < CERT_DAYS * 86400:
                st.problems.append(f"{node}: certificate {c['path']} expires in {_age(left)}")
    st.certificates.sort(key=lambda c: c["notAfter"])
    # load balancers and the VIP
    vip = outputs.get("vip")
    holders = [lb for lb in lbs if vip in seen.get(lb, {}).get("addresses", [])]
    for lb in lbs:
        h = seen.get(lb, {}).get("haproxy") or {}
        row = {"name": lb, "holdsVip": lb in holders, "servers": h.get("servers", []), "error": h.get("error")}
        st.load_balancers.append(row)
        if h.get("error"):
            st.problems.append(f"{lb}: HAProxy's stats cannot be read ({h['error']})")
        for srv in h.get("servers", []):
            if not srv["status"].startswith("UP"):
                st.problems.append(f"{lb}: HAProxy backend {srv['server']} is {srv['status']}"
                                   + (f" ({srv['checkStatus']})" if srv.get("checkStatus") else ""))
    if vip and lbs and not [lb for lb in lbs if lb in st.unreachable]:
        if not holders:
            st.problems.append(f"no load balancer holds the VIP {vip}")
        elif len(holders) > 1:
            st.problems.append(f"the VIP {vip} is on more than one load balancer: {', '.join(holders)}")
    return st


def render(st: Status) -> str:
    out = [f"hakube status{': stack ' + st.stack if st.stack else ''}: "
           + (f"{len(st.problems)} problem{'s' if len(st.problems) != 1 else ''}" if st.problems else "healthy")]
    if st.problems:
        out += ["", "PROBLEMS"] + [f"  {p}" for p in st.problems]
    if st.notes:
        out += ["", "notes"] + [f"  {n}" for n in st.notes]
    if st.members:
        out += ["", "etcd", f"  {'member':10} {'id':17} {'role':9} {'version':8} {'db':>9} {'in use':>9} "
                f"{'raft index':>11} {'behind':>7}  alarms"]
        for m in st.members:
            if "error" in m:
                out.append(f"  {m['name']:10} does not answer: {m['error']}")
                continue
            out.append(f"  {m['name']:10} {m['id']:17} {m['role']:9} {m['version']:8} {_size(m['dbSize']):>9} "
                       f"{_size(m['dbSizeInUse']):>9} {m['raftIndex']:>11} {m['behind']:>7}  "
                       + (", ".join(m["alarms"]) or "-"))
    if st.backups:
        out += ["", "backups (newest per member)"]
        for b in st.backups:
            if not b.get("enabled"):
                out.append(f"  {b['name']:10} off")
            elif "newestTime" not in b:
                out.append(f"  {b['name']:10} none yet in {b['dir']}")
            else:
                every = f", every {_age(b['intervalSeconds'])}" if b.get("intervalSeconds") else ""
                out.append(f"  {b['name']:10} {_age(b.get('ageSeconds', 0))} old, {_size(b['newestSize'])}, "
                           f"{b['count']} kept, last run: {b.get('lastResult') or '-'}{every}")
    if st.offsite:
        o = st.offsite
        out += ["", "off-host copies"]
        if "name" in o:
            out.append(f"  {o['url']}: newest {o['name']}, {_age(o.get('ageSeconds', 0))} old, sha256 {o['sha256']}")
        else:
            out.append(f"  {o['url']}: none yet")
    if st.certificates:
        out += ["", "certificates (soonest expiry first)"]
        for c in st.certificates[:12]:
            out.append(f"  {c['node']:10} {c['daysLeft']:>5} days  {c['path']}")
        if len(st.certificates) > 12:
            out.append(f"  ... {len(st.certificates) - 12} more, all later")
    if st.load_balancers:
        out += ["", "load balancers"]
        for lb in st.load_balancers:
            servers = ", ".join(f"{s['server']} {s['status']}" for s in lb["servers"]) or "-"
            out.append(f"  {lb['name']:10} {'holds the VIP' if lb['holdsVip'] else 'backup':14} backends: {servers}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make status", description=__doc__.split("\n\n")[0])
    ap.add_argument("--outputs", required=True, help="the stack's outputs as JSON (`-`: stdin), with secrets")
    ap.add_argument("--stack", default="")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        outputs = read_outputs(args.outputs, "make status")
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    st = analyse(outputs, probe_all(outputs), stack=args.stack)
    print(json.dumps(st.as_json(), indent=2) if args.json else render(st), end="" if not args.json else "\n")
    return 1 if st.problems else 0


if __name__ == "__main__":
    sys.exit(main())
