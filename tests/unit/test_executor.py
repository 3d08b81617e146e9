"""The socket between the stand-in plugins and the lab's process
(tests/realengine/executor.py): a call gets the handler's answer, a handler's
failure comes back as the step's error in its own words, and calls that
overlap (the engine runs steps side by side) are served side by side."""
import threading
import time

import pytest

from tests.realengine.executor import Executor, ExecutorError, call


def test_a_call_gets_the_handlers_answer(tmp_path):
    ex = Executor(tmp_path / "x.sock", lambda req: {"id": req["urn"] + "-id", "outputs": {"stdout": "ok"}}).start()
    try:
        assert call(str(ex.path), {"op": "create", "urn": "u"}) == {"id": "u-id", "outputs": {"stdout": "ok"}}
    finally:
        ex.stop()
    assert not ex.path.exists()


def test_a_handlers_failure_is_the_steps_error(tmp_path):
    def fail(req):
        raise RuntimeError("hakube-etcd-etcd-01-start: Process exited with status 1")
    ex = Executor(tmp_path / "x.sock", fail).start()
    try:
        with pytest.raises(ExecutorError, match="Process exited with status 1"):
            call(str(ex.path), {"op": "create", "urn": "u"})
    finally:
        ex.stop()


def test_overlapping_calls_are_served_side_by_side(tmp_path):
    inside = threading.Barrier(3, timeout=5)      # each handler waits until all three are in

    def slow(req):
        inside.wait()
        return {"id": req["urn"], "outputs": {}}
    ex = Executor(tmp_path / "x.sock", slow).start()
    answers = []
    try:
        threads = [threading.Thread(target=lambda u=u: answers.append(call(str(ex.path), {"urn": u})["id"]))
                   for u in "abc"]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(answers) == ["a", "b", "c"], "a call waited on another"
        assert time.monotonic() - t0 < 5
    finally:
        ex.stop()


def test_a_copied_file_asset_goes_back_to_the_engine_as_it_came():
    """CopyToRemote's outputs are its inputs: the lab's copy reads the asset's
    path, and the engine gets the asset back in its own shape (a value the
    socket and the plugin's Struct carry), not the lab's stand-in object."""
    import json

    from tests.lab.realrun import LabExecutor
    from tests.realengine.plugin import ASSET, COPY, SIG

    asset = {SIG: ASSET, "path": "/var/tmp/snapshot.db", "hash": "0" * 64}

    class Mocks:
        def execute(self, step, inputs):
            assert inputs["source"].path == "/var/tmp/snapshot.db"
            return "copy-id", dict(inputs)
    out = LabExecutor(Mocks())({"op": "create", "type": COPY, "id": "", "olds": {},
                                "urn": "urn:pulumi:lab::hakube::command:remote:CopyToRemote::hakube-etcd-01-snapshot",
                                "inputs": {"source": asset, "remotePath": "/var/lib/hakube/upload/snapshot.db"}})
    assert out["outputs"]["source"] == asset
    json.dumps(out)
