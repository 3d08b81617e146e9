"""`make backups STACK=...`: the stack's off-host snapshots (etcd.backup.offsite),
newest first, each with its size and the sha256 written beside it when it was
copied and checked; and the stack config that restores the newest. Read over
SSH from the first etcd member that answers, with that member's own rclone
remote (its credentials never leave it).

    pulumi stack output --json --show-secrets | python -m ops.backups --outputs -
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from ops.status import read_outputs, ssh_to

# On a member, as root: the folder from the backup job's values, then the
# listing and every sidecar, in one go.
LIST = r"""
set -euo pipefail
conf=/etc/hakube/offsite/rclone.conf
[ -r "$conf" ] || { echo "no off-host remote on $(hostname) (etcd.backup.offsite is not set)" >&2; exit 3; }
path=$(sed -n "s/^OFFSITE_PATH=//p" /usr/local/sbin/hakube-etcd-backup | tr -d "'")
url=$(sed -n "s/^OFFSITE_URL=//p" /usr/local/sbin/hakube-etcd-backup | tr -d "'")
echo "url $url"
rclone --config "$conf" --contimeout 10s --timeout 60s lsf --files-only --format sp --separator ' ' \
  --include 'etcd-*.db' "offsite:$path" | sed 's/^/file /'
rclone --config "$conf" --contimeout 10s --timeout 60s cat --include '*.sha256' "offsite:$path" | sed 's/^/sum /'
"""


def parse(text: str) -> tuple[str, list[dict]]:
    url, sizes, sums = "", {}, {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "url":
            url = rest
        elif kind == "file":
            size, name = rest.split(" ", 1)
            sizes[name] = int(size)
        elif kind == "sum" and len(rest.split()) == 2:
            sha, name = rest.split()
            sums[name] = sha
    rows = [{"name": n, "size": sizes[n], "sha256": sums.get(n)} for n in sizes]
    rows.sort(key=lambda r: r["name"].rsplit("-", 1)[1], reverse=True)
    return url, rows


def render(url: str, rows: list[dict]) -> str:
    out = [f"off-host snapshots in {url}, newest first ({len(rows)})"]
    for r in rows:
        out.append(f"  {r['name']:44} {r['size']:>12} B  sha256 {r['sha256'] or '(none: not checked, do not restore)'}")
    good = [r for r in rows if r["sha256"]]
    if good:
        out += ["", "To restore the newest, in the stack config (then pulumi up):", "  hakube:etcd:",
                f"    restore: {{offsite: {good[0]['name']}, sha256: {good[0]['sha256']}}}"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make backups", description=__doc__.split("\n\n")[0])
    ap.add_argument("--outputs", required=True, help="the stack's outputs as JSON (`-`: stdin), with secrets")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        outputs = read_outputs(args.outputs, "make backups")
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    members = [n for n in outputs["nodeIps"] if n.startswith("etcd-")]
    errors = []
    with ssh_to(outputs) as ssh:
        for node in members:
            p = subprocess.run(ssh(node, "sudo -n bash -s"), input=LIST, capture_output=True, text=True, timeout=120)
            if p.returncode == 0:
                url, rows = parse(p.stdout)
                print(json.dumps({"url": url, "snapshots": rows}, indent=2) if args.json else render(url, rows),
                      end="\n" if args.json else "")
                return 0
            errors.append(f"{node}: {(p.stderr.strip().splitlines() or [f'exit {p.returncode}'])[-1]}")
    print("make backups: no etcd member could list the off-host store:\n  " + "\n  ".join(errors), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
