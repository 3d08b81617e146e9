"""`make check-config STACK=...`: the stack file read as `pulumi up` reads
it; its nodes, or every problem with its key path (exit 2), never a
traceback."""
from __future__ import annotations

import sys

from .stackfile import load_or_say


def main(argv: list[str]) -> int:
    spec = load_or_say(argv[0] if argv else "dev")
    if spec is None:
        return 2
    print(f"{spec.stack}: " + ", ".join(f"{n.name} {n.ip}" for n in spec.topology.nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
