"""make review STACK=dev [BASE=<git ref>] [FORMAT=text|markdown|json] [SCRIPTS=1] [PREVIEW=<file>]

What `pulumi up` of STACK will do for the change between BASE (default: the
merge base with the main branch) and the working tree, by the real engine's
rules as the lab models them, needing nothing but this checkout: no state,
no passphrase, no libvirt host, no Pulumi CLI.

With PREVIEW=<file> (`pulumi preview --json` of the stack, where the real
engine is at hand) the review is made from the real plan, and the model's
plan is compared with it: each disagreement is printed (a bug in the model).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from config.stackfile import stacks

from . import build, compare, from_preview, render

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def default_base() -> str:
    for main in ("origin/main", "main", "origin/master", "master"):
        try:
            return git("merge-base", "HEAD", main)
        except subprocess.CalledProcessError:
            continue
    return "HEAD"


def export(ref: str, into: Path) -> Path:
    """The tracked files of `ref`, as a directory."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        said = archive.stderr.decode(errors="replace").strip()
        raise SystemExit(f"review: BASE={ref} is not a commit of this repository (git said: {said}).\n"
                         "Give a branch, tag or commit (git log --oneline, git tag), or leave BASE out to review "
                         "against the merge base with main.")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def side(root: Path, stack: str, work: Path, label: str, state_in: Path | None = None,
         previous_public: str | None = None) -> dict:
    """Run one side (review.side) in a process of its own; its report."""
    report = work / f"{label}.json"
    argv = [sys.executable, "-m", "review.side", "--root", str(root), "--stack", stack,
            "--report", str(report), "--state-out", str(work / f"{label}.state")]
    if state_in is not None:
        argv += ["--state-in", str(state_in)]
    if previous_public:
        argv += ["--previous-public", previous_public]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0 or not report.exists():
        raise SystemExit(f"review: the {label} side did not run ({root}):\n{proc.stderr[-3000:]}")
    return json.loads(report.read_text())


def review_dirs(base_root: Path, head_root: Path, stack: str, work: Path, scripts: bool = False):
    """(review, base report, head report) of two checkouts of one stack."""
    if not (base_root / f"Pulumi.{stack}.yaml").exists():
        print(f"review: the base has no Pulumi.{stack}.yaml: the whole stack is new", file=sys.stderr)
        (base_root / f"Pulumi.{stack}.yaml").write_text("config: {}\n")
    base = side(base_root, stack, work, "base")
    head = side(head_root, stack, work, "head", state_in=work / "base.state", previous_public=base.get("publicKey"))
    return build(base, head, scripts=scripts), base, head


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="make review", description=__doc__.split("\n\n")[1])
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--base", help="a git ref (default: the merge base with main)")
    ap.add_argument("--base-dir", type=Path, help="a checkout to compare against instead of a git ref")
    ap.add_argument("--head-dir", type=Path, default=ROOT, help="the change (default: this working tree)")
    ap.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    ap.add_argument("--scripts", action="store_true", help="show each step's script diff")
    ap.add_argument("--preview-json", type=Path, help="`pulumi preview --json` of the stack: review the real plan")
    args = ap.parse_args(argv)
    if not (args.head_dir / f"Pulumi.{args.stack}.yaml").exists():
        raise SystemExit(f"review: no stack {args.stack!r} here (no Pulumi.{args.stack}.yaml in {args.head_dir}); "
                         f"the stacks are: {', '.join(stacks(args.head_dir))}. Give one with STACK=<name>.")
    preview = None
    if args.preview_json:
        try:
            preview = json.loads(args.preview_json.read_text())
        except (OSError, ValueError) as err:
            raise SystemExit(f"review: PREVIEW={args.preview_json} is not the JSON of a preview ({err}); "
                             "write one with: pulumi preview --json --stack <stack> > preview.json") from None
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hakube-review-") as tmp:
        work = Path(tmp)
        if args.base_dir:
            base_root, base_label = args.base_dir.resolve(), str(args.base_dir)
        else:
            ref = args.base or default_base()
            base_root, base_label = export(ref, work / "base"), ref
        head_root = args.head_dir.resolve()
        review, base, head = review_dirs(base_root, head_root, args.stack, work, args.scripts)
        review.base, review.head = base_label, "working tree" if head_root == ROOT else str(args.head_dir)
        if preview is not None:
            nodes = (head.get("outputs") or {}).get("nodeIps") or {}
            real = from_preview(preview, nodes, args.stack)
            real.disagreements = compare(head, preview)
            review = real
    out = render(review, args.format)
    sys.stdout.write(out)
    print(f"(base {review.base}; reviewed in {time.monotonic() - t0:.1f} s)", file=sys.stderr)
    return 2 if review.refusal else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
