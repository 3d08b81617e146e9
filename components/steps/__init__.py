"""Step scripts shared by every component: helpers (common.sh) and generic
steps (a file from stdin, a verified systemd unit, PEM files from stdin).

A step's script is `sudo bash -c` of: the values prelude, common.sh, the
component's own helpers, then the step file itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..remote import render, sudo_bash

HERE = Path(__file__).parent


def step_script(step: Path | str, values: Mapping[str, object], libs: Sequence[Path] = ()) -> str:
    """`step` is a path, or the name of a shared step here (file, unit, pem_files)."""
    path = Path(step) if isinstance(step, Path) else HERE / f"{step}.sh"
    body = "".join(Path(lib).read_text() for lib in libs) + path.read_text()
    return sudo_bash(render(HERE / "common.sh", values) + body)


def pem_bundle(pems: Sequence[str], names: Iterable[str]) -> str:
    """PEM blocks one after another, in the order of `names` (for messages)."""
    out = []
    for name, pem in zip(names, pems, strict=True):
        if pem.count("-----BEGIN ") != 1:
            raise ValueError(f"{name}: expected exactly one PEM block")
        out.append(pem.strip() + "\n")
    return "".join(out)


def pem_files_spec(files: Iterable[tuple[str, str, str, str]]) -> str:
    """PEM_FILES for pem_files.sh from (path, mode, owner, group) tuples."""
    return " ".join(":".join(f) for f in files)
