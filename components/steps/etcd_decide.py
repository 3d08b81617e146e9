"""hakube's decisions about a live etcd cluster, made on a node from what etcd
itself answered (`etcdctl -w json`, the /version body), never from the
columns of etcdctl's table text.

Installed with the step helpers as etcd.py beside etcd.sh, and run by the
steps as `python3 etcd.py COMMAND ARGS < ANSWER`. Tested against answers
recorded from real etcd releases (tests/tools/etcd_answers.py). Standard
library only, Python 3.8 and later (what node images ship).

Exit status: 0 go ahead (stdout says why), 1 refused (stderr says why and
how to fix it), 2 an answer etcd does not give or a usage error (a bug, never
a decision), 3 not yet: etcd has not decided what the decision needs, ask
again shortly.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional, Sequence, Tuple

Version = Tuple[int, int, int]


class Unreadable(Exception):
    """An answer that is not what etcd prints."""


class Refused(Exception):
    """A decision not to act, with why and what to do."""


class NotYet(Exception):
    """etcd has not decided what the decision reads; ask again."""


def parse_version(text: str) -> Version:
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise Unreadable(f"not an etcd version: {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def minor(v: Version) -> str:
    return f"{v[0]}.{v[1]}"


class Status:
    """One endpoint of `etcdctl endpoint status -w json`."""

    def __init__(self, raw: object):
        try:
            self.endpoint = str(raw["Endpoint"])          # type: ignore[index]
            self.version = parse_version(raw["Status"]["version"])   # type: ignore[index]
            self.member = int(raw["Status"]["header"]["member_id"])  # type: ignore[index]
            self.leader = int(raw["Status"]["leader"])   # type: ignore[index]
        except (KeyError, TypeError, ValueError) as e:
            raise Unreadable(f"an endpoint status without {e}: {raw!r}") from None

    @property
    def text(self) -> str:
        return ".".join(map(str, self.version))


def statuses(text: str) -> List[Status]:
    """The endpoints that answered. etcdctl prints `null` when none did, and
    leaves out each one that did not."""
    if not text.strip():
        return []
    doc = _json(text)
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise Unreadable("not `etcdctl endpoint status -w json`: not a list")
    return [Status(s) for s in doc]


def cluster_version(body: str) -> Optional[Version]:
    """The cluster version of a /version body; None when there is no body
    (a member that is down, or alone and still forming: its client port
    answers nothing) or while etcd answers "not_decided"."""
    if not body.strip():
        return None
    doc = _json(body)
    if not isinstance(doc, dict) or "etcdserver" not in doc or "etcdcluster" not in doc:
        raise Unreadable(f"not an etcd /version body: {body[:200]!r}")
    if doc["etcdcluster"] == "not_decided":
        return None
    return parse_version(doc["etcdcluster"])


def running_version(text: str) -> str:
    """The version the one endpoint asked serves (`endpoint status -w json` of it)."""
    sts = statuses(text)
    if len(sts) != 1:
        raise Refused(f"expected the status of one endpoint, got {len(sts)} (etcdctl says why above)")
    return sts[0].text


def leader(text: str) -> str:
    """The member id (hex) of the endpoint that answered as the leader, or
    nothing when the leader is not among those that answered."""
    return next((format(st.member, "x") for st in statuses(text) if st.member == st.leader), "")


def members(text: str) -> List[str]:
    """`etcdctl member list -w json` as hakube's member table: one line per
    member, "id status name peerURLs learner", in etcd's order. id in hex,
    as etcdctl prints it and takes it back (member promote/remove); status
    "started" once the member has published its client URLs (a bootstrap
    member is named from initial-cluster before it ever ran, so its name
    says nothing), else "unstarted"; name "-" while it has none; learner
    "true" or "false"."""
    if not text.strip():
        raise Refused("etcd gave no member list (etcdctl says why above)")
    doc = _json(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("members"), list):
        raise Unreadable("not `etcdctl member list -w json`: no members")
    out = []
    for m in doc["members"]:
        try:
            ident, peers = int(m["ID"]), m.get("peerURLs") or []
        except (KeyError, TypeError, ValueError) as e:
            raise Unreadable(f"a member without an ID ({e}): {m!r}") from None
        out.append(" ".join((format(ident, "x"), "started" if m.get("clientURLs") else "unstarted",
                             m.get("name") or "-", ",".join(peers) or "-",
                             "true" if m.get("isLearner") else "false")))
    return out


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError as e:
        raise Unreadable(f"not JSON ({e}): {text[:200]!r}") from None


def upgrade(target: Version, cluster: Optional[Version], sts: Sequence[Status], members: int,
            floors: Dict[int, int], host: str, final: bool) -> str:
    """May this member install etcd `target`? etcd's upgrade policy: patch
    releases freely, one minor at a time, never a minor down, and every
    member at the patch level the next minor's upgrade guide requires
    (`floors`: minor -> patch) before it.

    The cluster version decides, but only once etcd has caught up. etcd sets
    it to the lowest server version among its members, from the leader's
    periodic look at each of them; until that look has reached every member
    (a cluster formed before its last member started, or just after a
    member moved to a new release) it is lower than every member, 3.0.0
    right after a bootstrap. While it lags: NotYet, so the caller asks again.
    When asked with `final`, the lagging or missing cluster version is
    replaced by what etcd will decide it to be, the lowest minor of the
    members, but only when every one of the `members` configured answered;
    otherwise nothing can be judged and the change is refused."""
    lowest = min((s.version for s in sts), default=None)
    behind = cluster is None or (lowest is not None and cluster[:2] < lowest[:2])
    judged_by = "cluster version"
    if behind:
        seen = "has not decided one" if cluster is None else f"says {minor(cluster)}"
        running = ", ".join(f"{s.endpoint} runs {s.text}" for s in sts) or "no member answered"
        if not final:
            raise NotYet(f"upgrade check: the cluster version {seen} while {running}; asking again")
        if len(sts) < members or lowest is None:
            raise Refused(
                f"refusing etcd {'.'.join(map(str, target))} on {host}: cannot tell which etcd version the "
                f"cluster runs.\nIts cluster version {seen}, and {len(sts)} of {members} members answered "
                f"({running}).\nBring every member up and healthy, then run pulumi up again. Nothing was changed.")
        cluster, judged_by = (lowest[0], lowest[1], 0), f"members' versions (the cluster version {seen})"
    assert cluster is not None
    t, c = target[1], cluster[1]
    tv = ".".join(map(str, target))
    if t < c:
        raise Refused(
            f"refusing etcd {tv} on {host}: the cluster runs etcd {minor(cluster)}, and etcd does not\n"
            f"support going back a minor version. Keep hakube:etcd.version at {minor(cluster)}.x (or restore a\n"
            "snapshot taken before the upgrade onto a new cluster). Nothing was changed.")
    if t > c + 1:
        raise Refused(
            f"refusing etcd {tv} on {host}: the cluster runs etcd {minor(cluster)}, and etcd upgrades\n"
            f"one minor version at a time. Set hakube:etcd.version to the newest 3.{c + 1}.x, run\n"
            f"pulumi up, then move on to {tv}. Nothing was changed.")
    if t == c + 1 and c in floors:
        floor = (3, c, floors[c])
        low = [f"{s.endpoint} runs {s.text}" for s in sts if s.version[:2] == floor[:2] and s.version < floor]
        if low:
            raise Refused(
                f"refusing etcd {tv}: the upgrade guide to 3.{t} requires every member on\n"
                f"3.{c}.{floors[c]} or later first; {';'.join(low)}. Upgrade to the newest 3.{c}.x first.")
    return f"upgrade check: cluster version {minor(cluster)} ({judged_by}) -> {tv} allowed"


def floors_of(text: str) -> Dict[int, int]:
    """ETCD_UPGRADE_FLOORS ("5=32 6=11") as {5: 32, 6: 11}."""
    out = {}
    for item in text.split():
        m, sep, p = item.partition("=")
        if not sep or not m.isdigit() or not p.isdigit():
            raise Unreadable(f"not minor=patch: {item!r} in {text!r}")
        out[int(m)] = int(p)
    return out


def _upgrade(args: argparse.Namespace, stdin: str) -> str:
    return upgrade(parse_version(args.target), cluster_version(args.version_body), statuses(stdin),
                   args.members, floors_of(args.floors), args.host, args.final)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="etcd.py", description="hakube's decisions from etcd's answers")
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="< endpoint status -w json: may this member install TARGET")
    up.add_argument("--target", required=True, help="the release to install, X.Y.Z")
    up.add_argument("--version-body", default="", help="this member's /version body ('' if none)")
    up.add_argument("--members", type=int, required=True, help="how many members the stack configures")
    up.add_argument("--floors", default="", help='ETCD_UPGRADE_FLOORS, e.g. "5=32 6=11"')
    up.add_argument("--host", required=True)
    up.add_argument("--final", action="store_true", help="the last ask: judge a lagging cluster version")
    up.set_defaults(run=_upgrade)
    ls = sub.add_parser("members", help="< member list -w json: the member table (id status name peerURLs learner)")
    ls.set_defaults(run=lambda args, stdin: "\n".join(members(stdin)))
    sub.add_parser("version", help="< endpoint status -w json of one endpoint: the version it serves").set_defaults(
        run=lambda args, stdin: running_version(stdin))
    sub.add_parser("leader", help="< endpoint status -w json: the id of the endpoint that leads, if it answered"
                   ).set_defaults(run=lambda args, stdin: leader(stdin))
    return ap


def main(argv: List[str], stdin: str) -> Tuple[int, str, str]:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:          # --help, or argparse's own message on stderr
        return int(e.code or 0), "", ""
    try:
        return 0, args.run(args, stdin) + "\n", ""
    except Refused as e:
        return 1, "", f"{e}\n"
    except NotYet as e:
        return 3, f"{e}\n", ""
    except Unreadable as e:
        return 2, "", f"etcd.py {args.command}: cannot read etcd's answer: {e}\n"


if __name__ == "__main__":
    rc, out, err = main(sys.argv[1:], "" if sys.stdin.isatty() else sys.stdin.read())
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(rc)
