"""hakube's program run by the real Pulumi engine: the CLI `make tools`
builds (.tools/bin/pulumi), through the Automation API as an inline program
(the SDK serves `__main__.py` from this process: no language host, which the
Go module proxy refuses to build), with a file backend and a passphrase in a
work directory of its own, and the stand-in provider plugins of
tests/realengine on PATH.

    python -m tests.realengine.driver WORK STACK CONFIG.json OP [--replace URN]... [--secrets SECRETS.json]

OP: preview (prints `pulumi preview --json`), up, refresh, destroy,
expect-no-changes (a preview that fails on any change), export (the state:
`pulumi stack export --show-secrets`). CONFIG.json: the
stack's `hakube:` keys as `Pulumi.<stack>.yaml` holds them (the stack file
in WORK is written from it before each run). SECRETS.json: the stack's
secret keys (`pulumi config set --secret`), encrypted into the stack file
with the stack's passphrase as the CLI does it. One process per run: the SDK's
runtime settings are global, and the graph tier's mocks live in the test
process.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.realengine.executor import ENV
from tests.realengine.plugin import SECRET, SIG

ROOT = Path(__file__).resolve().parents[2]
PULUMI_ROOT = ROOT / ".tools"
BIN = Path(__file__).resolve().parent / "bin"
PASSPHRASE = "hakube-real-engine"


def env(work: Path) -> dict[str, str]:
    return {
        "PATH": f"{BIN}:{PULUMI_ROOT / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PULUMI_HOME": str(work / "pulumi-home"),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "1",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_CONFIRMATIONS": "1",
        # The state is written once, when the run ends (a failed run's too:
        # pkg/backend/snapshot.go unsafeServiceLoop saves on close), not after
        # every step. What the engine decides is the same; only a CLI killed
        # mid-run would lose what it did, and nothing here kills it. A run
        # with nothing to do costs 2.5 s less CPU on the dev stack (8.4 -> 5.8).
        "PULUMI_SKIP_CHECKPOINTS": "true",
        "HAKUBE_PYTHON": sys.executable,
        "HAKUBE_ECHO_STATE": str(work / "echo-state.json"),
        # mode `lab` of the plugins: what acts is the lab's process (executor.py)
        **({ENV: os.environ[ENV]} if os.environ.get(ENV) else {}),
    }


PACKAGES = ("command", "tls", "libvirt")
DEBUG_PROVIDERS = "PULUMI_DEBUG_PROVIDERS"


def _die_with_parent() -> None:
    """A plugin outlives no test process that started it (prctl PR_SET_PDEATHSIG, SIGKILL)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class Plugins:
    """The three stand-in plugins, started once and kept for many runs: the
    CLI attaches to a running provider named in $PULUMI_DEBUG_PROVIDERS
    (`pkg:port,...`) instead of starting its own
    (pkg/resource/plugin/provider_plugin.go GetProviderAttachPort and
    NewProvider: it dials the port, handshakes, calls Attach with its
    address, and has nothing to kill at the end). The RPCs a run makes are
    the same; each run saves starting three Python processes (about 1.2 s
    of wall time a run on the dev stack). The plugins keep no state between
    calls (plugin.py: what a call needs comes in the call, and the echo
    counts live in a file), so one process serves every run and every
    provider instance of a run."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = open(log, "a")
        self.procs = {}
        for package in PACKAGES:
            proc = subprocess.Popen([sys.executable, str(BIN.parent / "plugin.py"), package], stdout=subprocess.PIPE,
                                    stderr=self.log, text=True, env=env, preexec_fn=_die_with_parent)
            self.procs[package] = (proc, proc.stdout.readline().strip())
            if not self.procs[package][1].isdigit():
                self.stop()
                raise RuntimeError(f"the {package} plugin did not start: see {log}")

    @property
    def attach(self) -> dict[str, str]:
        """The environment that makes a run's CLI attach to these plugins."""
        return {DEBUG_PROVIDERS: ",".join(f"{pkg}:{port}" for pkg, (_, port) in self.procs.items())}

    def cpu(self) -> float:
        """CPU seconds the plugins have used so far."""
        tick, total = os.sysconf("SC_CLK_TCK"), 0.0
        for proc, _ in self.procs.values():
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        for proc, _ in self.procs.values():
            proc.kill()
            proc.wait()
            proc.stdout.close()
        self.procs = {}
        self.log.close()


def plain(value):
    """A state value with its secrets revealed (`stack export --show-secrets`
    writes a secret as its signature and its JSON text in `plaintext`)."""
    if isinstance(value, dict):
        if value.get(SIG) == SECRET and "plaintext" in value:
            return plain(json.loads(value["plaintext"]))
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def resources(s) -> list[dict]:
    """The stack's state after a run: each resource's URN, type, id, inputs
    and outputs (secrets revealed: the lab reads its own keys)."""
    deployment = s.export_stack().deployment or {}
    return [{"urn": r["urn"], "type": r["type"], "id": r.get("id", ""), "custom": r.get("custom", False),
             "inputs": plain(r.get("inputs") or {}), "outputs": plain(r.get("outputs") or {}),
             "dependencies": r.get("dependencies") or []}
            for r in deployment.get("resources") or []]


def program() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def stack(work: Path, name: str, config: dict | None, secrets: dict | None = None):
    """The stack, its file written from `config` and `secrets` first (None:
    the stack file as the last run left it)."""
    from pulumi import automation as auto
    (work / "state").mkdir(parents=True, exist_ok=True)
    stack_file = work / f"Pulumi.{name}.yaml"
    if config is not None:
        salt = yaml.safe_load(stack_file.read_text()).get("encryptionsalt") if stack_file.exists() else None
        doc = {"config": {f"hakube:{k}": v for k, v in config.items()}}
        if salt:
            doc["encryptionsalt"] = salt
        stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    e = env(work)
    os.environ.update({k: v for k, v in e.items() if k.startswith("HAKUBE_")})
    ws = auto.LocalWorkspaceOptions(
        work_dir=str(work), pulumi_home=e["PULUMI_HOME"], env_vars=e,
        pulumi_command=auto.PulumiCommand(root=str(PULUMI_ROOT), skip_version_check=True),
        project_settings=auto.ProjectSettings(name="hakube", runtime="python",
                                              backend=auto.ProjectBackend(url=f"file://{work / 'state'}")),
        secrets_provider="passphrase")
    s = auto.create_or_select_stack(stack_name=name, project_name="hakube", program=program, opts=ws)
    if secrets and config is not None:
        # `pulumi config set-all --secret`: the CLI encrypts them (a secret
        # dropped from SECRETS.json is gone: the file was written without it)
        s.set_all_config({f"hakube:{k}": auto.ConfigValue(v, secret=True) for k, v in secrets.items()})
    return s


def step_of(event, steps: list[dict]) -> None:
    """Each step the engine took, in the order it started them: URN, type
    and operation (same, create, update, replace, create-replacement,
    delete-replaced, delete ...)."""
    pre = event.resource_pre_event
    if pre is not None and pre.metadata is not None:
        steps.append({"urn": pre.metadata.urn, "type": pre.metadata.type, "op": str(pre.metadata.op.value)})


def run(work: Path, name: str, config: dict, op: str, replace: list[str] | None = None,
        secrets: dict | None = None) -> dict:
    from pulumi import automation as auto
    s = stack(work, name, None if op == "export" else config, secrets)
    t0 = time.monotonic()
    out: dict = {"op": op}
    if op == "preview":
        res = s.preview(json=True, replace=replace or None, color="never")
        out["preview"] = json.loads(res.stdout)
    elif op == "expect-no-changes":
        try:
            res = s.preview(expect_no_changes=True, color="never")
        except auto.CommandError as err:
            # which resources would change, and in which keys: the plan's own words
            plan = json.loads(s.preview(json=True, color="never").stdout)
            out["error"] = str(err)[-2000:]
            out["changed"] = [{"urn": st.get("urn"), "op": st.get("op"),
                               "keys": sorted(st.get("detailedDiff") or st.get("diffReasons") or [])}
                              for st in plan.get("steps") or [] if st.get("op") not in ("same", "read")]
            return out
        out["changes"] = res.change_summary
    elif op == "up":
        steps: list[dict] = []
        try:
            res = s.up(replace=replace or None, color="never", on_event=lambda e: step_of(e, steps))
        except auto.CommandError as err:
            # a failed step: the engine's words, and what it had done
            out.update(error=str(err), steps=steps)
            return out
        out["changes"] = res.summary.resource_changes
        out["outputs"] = {k: v.value for k, v in res.outputs.items()}     # secrets too: the lab reads its keys
        out["steps"] = steps
    elif op == "export":
        out["resources"] = resources(s)
    elif op == "refresh":
        out["changes"] = s.refresh(color="never").summary.resource_changes
    elif op == "destroy":
        steps = []
        out["changes"] = s.destroy(color="never", on_event=lambda e: step_of(e, steps)).summary.resource_changes
        out["steps"] = steps
    else:
        raise SystemExit(f"unknown operation {op!r}")
    out["seconds"] = round(time.monotonic() - t0, 2)
    return out


def main(argv: list[str]) -> int:
    work, name, config_file, op = Path(argv[1]).resolve(), argv[2], Path(argv[3]), argv[4]
    replace = [argv[i + 1] for i, a in enumerate(argv) if a == "--replace"]
    secrets = next((json.loads(Path(argv[i + 1]).read_text()) for i, a in enumerate(argv) if a == "--secrets"), None)
    work.mkdir(parents=True, exist_ok=True)
    result = run(work, name, json.loads(config_file.read_text()), op, replace, secrets)
    # CPU seconds of the whole run: this process (the program) and what it
    # waited for (the CLI, and the plugins the CLI waited for)
    result["cpu"] = round(sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF,
                              resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime")), 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
