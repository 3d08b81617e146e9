"""One side of a review, in a process of its own: a checkout's program run
under the engine model (engine/, the lab's) with an executor that runs
nothing, from the state the other side left (or none), and a report of
every step as JSON.

    python -m review.side --root DIR --stack dev [--state-in F] --state-out F --report F

The engine and the executor are this checkout's (the reviewer's); the
program, its components and its stack file are `--root`'s. Secret config
cannot be read without the stack's passphrase: an admin key is stood in by a
throwaway key pair derived from its public key (the same on both sides, a
new one for a new public key), so a key rotation still shows as one.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import traceback
from pathlib import Path

import yaml

from engine import Engine
from engine.echo import EchoExecutor
from engine.monitor import is_secret
from engine.program import run_program

NAMESPACE = "hakube"
SECRET_KEYS = ("sshPrivateKey", "sshPreviousPrivateKey")


def stand_in_key(public: str) -> tuple[str, str]:
    """A key pair derived from `public` (an ed25519 seed from its digest)."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519
    key = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(public.strip().encode()).digest())
    private = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption()).decode()
    return private, key.public_key().public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH).decode()


def stack_config(root: Path, stack: str, previous_public: str | None) -> tuple[dict, dict, dict, str | None]:
    """(raw config, secrets, the secure values as written, the admin public
    key as written) of `root`'s stack file."""
    doc = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text()) or {}
    raw, secure = {}, {}
    for key, value in (doc.get("config") or {}).items():
        ns, _, name = key.partition(":")
        if ns != NAMESPACE:
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            secure[name] = value["secure"]
        elif name not in SECRET_KEYS:
            raw[name] = value
    secrets = {}
    public = (raw.get("ssh") or {}).get("publicKey")
    if public:
        private, stand_in = stand_in_key(public)
        raw["ssh"] = {**raw["ssh"], "publicKey": stand_in}
        secrets["sshPrivateKey"] = private
        if "sshPreviousPrivateKey" in secure and previous_public:
            secrets["sshPreviousPrivateKey"] = stand_in_key(previous_public)[0]
    return raw, secrets, secure, public


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m review.side")
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--state-in", type=Path)
    ap.add_argument("--state-out", type=Path)
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--previous-public", help="the other side's ssh.publicKey (a rotation's previous key)")
    ap.add_argument("--config", type=Path, help='JSON {"raw": {...}, "secrets": {...}}: the stack config to use '
                                                 "instead of the stack file (the lab's, whose keys are real)")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    engine, executor = Engine(), EchoExecutor()
    if args.state_in:
        engine.state, engine.pending_deletes, executor.creations, executor.by_name = \
            pickle.loads(args.state_in.read_bytes())
    if args.config:
        given = json.loads(args.config.read_text())
        raw, secrets, secure = given["raw"], given.get("secrets") or {}, {}
        public = (raw.get("ssh") or {}).get("publicKey")
    else:
        raw, secrets, secure, public = stack_config(root, args.stack, args.previous_public)
    report: dict = {"root": str(root), "stack": args.stack, "secure": secure, "publicKey": public}
    # the checkout's own config and components, not this one's
    for name in [m for m in sys.modules if m.split(".")[0] in ("config", "components")]:
        del sys.modules[name]
    try:
        run = run_program(args.stack, raw, executor, secrets=secrets, engine=engine, root=root)
    except BaseException as err:       # noqa: BLE001 - a refusal is the review's to print
        report["error"] = _refusal(err)
        args.report.write_text(json.dumps(report, indent=1, default=str))
        return 0
    secret_keys = {r.urn: sorted(k for k, v in r.inputs.items() if is_secret(v)) for r in run.registrations}
    report["steps"] = [_step(s, secret_keys.get(s.urn, [])) for s in run.steps]
    report["deleted"] = [{"name": r.name, "type": r.type, "urn": r.urn,
                          "host": (r.inputs.get("connection") or {}).get("host"),
                          "delete": r.inputs.get("delete") if r.type == "command:remote:Command" else None,
                          "retained": bool(r.options.get("retain_on_delete"))} for r in run.deleted]
    report["outputs"] = {k: v for k, v in run.outputs.items() if not is_secret(v)}
    args.report.write_text(json.dumps(report, indent=1, default=str))
    if args.state_out:
        args.state_out.write_bytes(pickle.dumps((engine.state, engine.pending_deletes, executor.creations,
                                                 executor.by_name)))
    return 0


def _refusal(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return str(err.code)
    text = str(err) or type(err).__name__
    # a ConfigError or an apply's refusal: its message; anything else: the trace too
    if type(err).__name__ in ("ConfigError", "KeyProblem") or "invalid stack config" in text:
        return text
    return text + "\n" + "".join(traceback.format_exception(err))[-2000:]


def _digest(value) -> str:
    return "secret:" + hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _masked(inputs: dict, keys: list[str], secret: list[str]) -> dict:
    """The inputs named, secret values as a digest (a change still shows,
    the value never leaves this process)."""
    out = {}
    for k in keys:
        if k not in inputs:
            continue
        v = inputs[k]
        if k == "connection" and isinstance(v, dict):
            v = {"host": v.get("host"), "user": v.get("user"), "privateKey": _digest(v.get("privateKey")),
                 "hostKey": v.get("hostKey")}
        elif k in secret:
            v = _digest(v)
        out[k] = v
    return out


def _step(s, secret: list[str]) -> dict:
    old = s.old.inputs if s.old is not None else {}
    new = s.new.inputs if s.new is not None else {}
    keys = sorted(set(s.changed) | ({"create", "update", "stdin", "delete"} if s.type.startswith("command:") else set()))
    hidden = s.action in secret
    return {
        "name": s.name, "type": s.type, "urn": s.urn, "op": s.op, "changed": list(s.changed),
        "replace_keys": list(s.replace_keys), "dbr": s.delete_before_replace,
        "delete_first": [r.name for r in s.delete_first], "reason": s.reason,
        "action": s.action, "runs": s.runs, "script": (None if hidden else s.script) if s.runs else None,
        "secret": secret, "ignored": sorted(s.ignored),
        "old": _masked(old, keys, secret), "new": _masked(new, keys, secret),
        "old_script": None if hidden else _old_script(s), "dependencies": list(s.new.dependencies) if s.new else [],
        "host": (new.get("connection") or old.get("connection") or {}).get("host"),   # where a step runs
    }


def _old_script(s) -> str | None:
    """The text the step ran last time, to compare with what it runs now."""
    if s.old is None or s.action is None:
        return None
    return s.old.inputs.get(s.action) or s.old.inputs.get("create")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
