"""The Kubernetes binaries `make tools` built from k8s.io/kubernetes's Go
module (tools/kubernetes/v<version>/), linked as
.tools/kubernetes/v<version>/<binary>."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "kubernetes"
WRAPPERS = ROOT / "tools" / "kubernetes"


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def wrapped_versions() -> list[str]:
    """The releases `make tools` builds (a wrapper module each), oldest first."""
    return sorted((p.name[1:] for p in WRAPPERS.glob("v*") if (p / "go.mod").exists()), key=_vkey)


def built(binary: str) -> dict[str, Path]:
    """version -> path of each build of `binary` that is here."""
    found = {p.name[1:]: p / binary for p in TOOLS.glob("v*") if (p / binary).exists()} if TOOLS.exists() else {}
    return dict(sorted(found.items(), key=lambda kv: _vkey(kv[0])))
