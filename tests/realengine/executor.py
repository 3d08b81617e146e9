"""The acting half of a provider, served to the stand-in plugins.

Under the real engine the plugins (plugin.py) answer Check and Diff
themselves, as the real providers' source does, but a plugin whose
environment names an executor ($HAKUBE_EXECUTOR: a Unix socket) does not
make up what Create, Update and Delete return: it asks the process that
serves the socket, which acts (the lab's LabProviders: SSH to real hosts,
nspawn hosts for Domains, real certificates) and answers with the
resource's id and outputs, or with the error the step fails with.

So in the lab the engine is Pulumi's (what runs, in which order, replaces,
deletes, state) and what acts is the lab's (tests/lab/providers.py).

One request per connection, as a dict: {"op": "create" | "update" |
"delete", "type", "urn", "id", "inputs", "olds"} (plain values: secrets
revealed; the plugin marks its answer's secrets again). The answer:
{"id", "outputs"} or {"error": text}.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Callable

ENV = "HAKUBE_EXECUTOR"
# both ends are this checkout's processes on this machine; the key only
# keeps another local process from talking to the socket by mistake
AUTHKEY = b"hakube-lab-executor"


class ExecutorError(RuntimeError):
    """What the step fails with, in the acting side's words."""


class Executor:
    """Serves `handle(request) -> answer` on a Unix socket, a thread per call
    (the engine runs up to its parallelism of steps at once)."""

    def __init__(self, path: Path, handle: Callable[[dict], dict]):
        self.path = Path(path)
        self.handle = handle
        self.path.unlink(missing_ok=True)
        self.listener = Listener(str(self.path), family="AF_UNIX", authkey=AUTHKEY)
        os.chmod(self.path, 0o600)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        # seconds during which at least one call was being acted on: what a
        # run spent acting, against its wall time (the rest is the engine's)
        self.acting = 0.0
        self._active, self._since = 0, 0.0
        self._lock = threading.Lock()

    def start(self) -> "Executor":
        self.thread.start()
        return self

    def _serve(self) -> None:
        while True:
            try:
                conn = self.listener.accept()
            except OSError:
                return                      # stop() closed the listener
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn) -> None:
        with conn:
            request = conn.recv()
            self._enter()
            try:
                answer = self.handle(request)
            except Exception as err:        # noqa: BLE001 - the step's failure, sent to the engine
                answer = {"error": str(err) or traceback.format_exc()}
            finally:
                self._leave()
            conn.send(answer)

    def _enter(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = time.monotonic()
            self._active += 1

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self.acting += time.monotonic() - self._since

    def stop(self) -> None:
        self.listener.close()
        self.path.unlink(missing_ok=True)


def call(path: str, request: dict) -> dict:
    """One request to the executor at `path` (from a plugin)."""
    with Client(path, family="AF_UNIX", authkey=AUTHKEY) as conn:
        conn.send(request)
        answer = conn.recv()
    if "error" in answer:
        raise ExecutorError(answer["error"])
    return answer
