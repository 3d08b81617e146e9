"""Reading `Pulumi.<stack>.yaml` directly, for tests and tools that run
without the Pulumi engine (the lab, `make check-config`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .reader import ConfigError
from .spec import NAMESPACE, Spec, load


def raw_from_stack_file(path: Path) -> dict[str, Any]:
    """The `hakube:*` keys of a stack file, namespace stripped. Keys of other
    namespaces are left to their owners; secure (encrypted) values stay opaque."""
    doc = yaml.safe_load(Path(path).read_text()) or {}
    config = doc.get("config") or {}
    raw: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, name = key.partition(":")
        if ns == NAMESPACE and name:
            raw[name] = value
        elif not name:
            raise ConfigError([f"{key}: config keys take a namespace, e.g. {NAMESPACE}:{key}"])
    return raw


def load_stack_file(root: Path, stack: str) -> Spec:
    return load(raw_from_stack_file(Path(root) / f"Pulumi.{stack}.yaml"), stack)
