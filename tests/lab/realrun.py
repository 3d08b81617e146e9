"""The lab's program runs, by the real Pulumi engine: the CLI `make tools`
builds runs the program (tests/realengine/driver.py, one process per run)
with the stand-in plugins in mode `lab`; each Create, Update and Delete they
are asked for comes back here (tests/realengine/executor.py) and
LabProviders acts. What runs, in which order, replaces and deletes, and the
stack's state are the real engine's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from engine.core import Step, _command_action
from tests.harness import ROOT
from tests.realengine.driver import Plugins, env as driver_env
from tests.realengine.executor import ENV, Executor
from tests.realengine.plugin import ASSET, SIG

from .providers import COMMAND, LabProviders


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class LabExecutor:
    """The plugins' Create/Update/Delete, acted on by the lab's LabProviders."""

    def __init__(self, mocks: LabProviders):
        self.mocks = mocks

    def __call__(self, request: dict) -> dict:
        op, type_, urn = request["op"], request["type"], request["urn"]
        name = _name(urn)
        if op == "delete":
            props = request["inputs"]           # a resource's last outputs (a Command's hold its inputs)
            self.mocks.delete(SimpleNamespace(type=type_, name=name, id=request["id"], inputs=props,
                                              outputs=props))
            return {}
        # a file asset as the engine sends it (its signature, its path), as LabProviders reads one
        assets = {k for k, v in request["inputs"].items() if isinstance(v, dict) and v.get(SIG) == ASSET}
        inputs = {k: SimpleNamespace(path=v["path"]) if k in assets else v for k, v in request["inputs"].items()}
        old = SimpleNamespace(id=request["id"], outputs=request["olds"]) if op == "update" else None
        action, script = _command_action(op, inputs) if type_ == COMMAND else (None, None)
        step = Step(urn=urn, type=type_, name=name, op=op, old=old, action=action, script=script)
        rid, outputs = self.mocks.execute(step, inputs)
        # an output that is an input asset (CopyToRemote's `source`) goes back as the engine sent it
        return {"id": rid, "outputs": {k: request["inputs"][k] if k in assets else v for k, v in outputs.items()}}


def diagnostics(error: str, limit: int = 4000) -> str:
    """What a failed `pulumi up` said went wrong: its Diagnostics section
    (each failed resource in its provider's words), not the outputs after it."""
    start = error.find("Diagnostics:")
    if start < 0:
        return error[-limit:]
    end = error.find("\nOutputs:", start)
    return error[start:end if end > 0 else None][:limit]


@dataclass
class RealRun:
    """One `pulumi up` by the real engine, as the lab's tests read a run."""
    outputs: dict
    changes: dict
    steps: list = field(default_factory=list)          # (urn, type, op) per step the engine took, in order
    seconds: float = 0.0
    state: Callable[[], list] | None = None             # the stack's state after this run (read when asked)

    @property
    def resources(self) -> list:
        assert self.state is not None
        return self.state()

    @property
    def registrations(self) -> list:
        return [SimpleNamespace(name=_name(r["urn"]), **r) for r in self.resources]

    def by_name(self, name: str):
        found = [r for r in self.registrations if r.name == name]
        assert len(found) == 1, f"{name}: {len(found)} resources of that name in the state"
        return found[0]

    @property
    def deleted(self) -> list:
        return [s for s in self.steps if s.op in ("delete", "delete-replaced")]


class RealEngine:
    """The lab's stack under the real CLI: its work dir (file backend,
    passphrase, stack file), the executor socket the plugins call."""

    def __init__(self, work: Path, stack: str, mocks: LabProviders):
        self.work, self.stack = work, stack
        self.work.mkdir(parents=True, exist_ok=True)
        self.executor = Executor(work / "executor.sock", LabExecutor(mocks)).start()
        # the environment the CLI would have started them with
        self.plugins = Plugins({**os.environ, **driver_env(work), ENV: str(self.executor.path)}, work / "plugins.log")
        # the stack's state, read (`pulumi stack export`) when first asked
        # after a run: most runs' is never read, and an export is a CLI run
        self._state: list[dict] | None = None
        self.generation = 0                         # runs that may have changed the state
        # (operation, wall seconds, seconds the lab's providers were acting,
        # CPU seconds of the driver, the CLI and the plugins) of each run
        self.spent: list[tuple[str, float, float, float]] = []

    def run(self, config: dict, op: str, replace: tuple[str, ...] = (), env: dict | None = None,
            secrets: dict | None = None) -> dict:
        (self.work / "config.json").write_text(json.dumps(config))
        argv = [sys.executable, "-m", "tests.realengine.driver", str(self.work), self.stack,
                str(self.work / "config.json"), op]
        for urn in replace:
            argv += ["--replace", urn]
        if secrets:
            path = self.work / "secrets.json"
            path.touch(mode=0o600)
            path.write_text(json.dumps(secrets))
            argv += ["--secrets", str(path)]
        t0, acting, plugins = time.monotonic(), self.executor.acting, self.plugins.cpu()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, ENV: str(self.executor.path), **self.plugins.attach, **(env or {})})
        wall, plugins = time.monotonic() - t0, self.plugins.cpu() - plugins
        if proc.returncode != 0:
            self.spent.append((op, wall, self.executor.acting - acting, plugins))
            raise RuntimeError(f"pulumi {op} (real engine): exit {proc.returncode}\n{proc.stderr[-4000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        self.spent.append((op, wall, self.executor.acting - acting, out.get("cpu", 0.0) + plugins))
        return out

    def up(self, config: dict, replace: tuple[str, ...] = (), env: dict | None = None,
           secrets: dict | None = None) -> RealRun:
        self._changed()
        out = self.run(config, "up", replace, env, secrets)
        steps = [SimpleNamespace(name=_name(s["urn"]), **s) for s in out.get("steps", [])]
        if "error" in out:
            raise RuntimeError(f"pulumi up (real engine) failed: {diagnostics(out['error'])}")
        generation = self.generation

        def state() -> list:
            assert self.generation == generation, "a later run changed the stack: read its own state"
            return self.resources

        return RealRun(outputs=out["outputs"], changes=out["changes"], steps=steps, seconds=out["seconds"],
                       state=state)

    def _changed(self) -> None:
        self.generation += 1
        self._state = None

    @property
    def resources(self) -> list[dict]:
        """The stack's state now (a failed run's too: what it did is kept)."""
        if self._state is None:
            self._state = self.run({}, "export")["resources"]
        return self._state

    def preview(self, config: dict, secrets: dict | None = None) -> dict:
        """`pulumi preview --json` of the stack as it is."""
        return self.run(config, "preview", secrets=secrets)["preview"]

    def expect_no_changes(self, config: dict, secrets: dict | None = None) -> dict:
        """`pulumi preview --expect-no-changes`: raises on any change, naming
        each resource that would change and how."""
        out = self.run(config, "expect-no-changes", secrets=secrets)
        if "error" in out:
            raise AssertionError("pulumi preview --expect-no-changes: changes proposed:\n  " + "\n  ".join(
                f"{c['op']} {_name(c['urn'])}: {', '.join(c['keys'])}" for c in out["changed"])
                + f"\n{out['error'][-1000:]}")
        return out

    def destroy(self, config: dict, secrets: dict | None = None) -> dict:
        self._changed()
        return self.run(config, "destroy", secrets=secrets)

    def commands(self) -> dict[str, str]:
        """URN -> name of every Command in the stack's state."""
        return {r["urn"]: _name(r["urn"]) for r in self.resources if r["type"] == COMMAND}

    def urn(self, name: str) -> str:
        found = [r["urn"] for r in self.resources if _name(r["urn"]) == name and r.get("custom")]
        if len(found) != 1:
            raise KeyError(f"{name}: {len(found)} resources of that name in the stack's state")
        return found[0]

    def cost(self) -> dict[str, tuple[int, float, float, float]]:
        """What the real engine cost this lab, by operation: the number of
        runs, their wall time, the part of it during which no provider was
        acting (the engine's own, the program's and the plugins'), and the
        CPU time of the driver, the CLI and the plugins."""
        by: dict[str, tuple[int, float, float, float]] = {}
        for op, wall, acting, cpu in self.spent:
            n, w, e, c = by.get(op, (0, 0.0, 0.0, 0.0))
            by[op] = (n + 1, w + wall, e + wall - acting, c + cpu)
        return by

    def close(self) -> None:
        self.plugins.stop()
        self.executor.stop()
