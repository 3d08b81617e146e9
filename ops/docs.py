"""make docs: the pages generated from the code, rewritten (or, with --check,
compared): docs/config.md and Pulumi.yaml's reference (config/docs.py),
docs/alerts.md (components/monitoring.py). tests/unit/test_docs.py runs the
check."""
from __future__ import annotations

import sys
from pathlib import Path

from config import docs as config_docs

ROOT = Path(__file__).resolve().parents[1]


def pages() -> dict[Path, str]:
    from components.monitoring import alerts_page
    return {ROOT / "Pulumi.yaml": config_docs.pulumi_yaml((ROOT / "Pulumi.yaml").read_text()),
            ROOT / "docs" / "config.md": config_docs.markdown(),
            ROOT / "docs" / "alerts.md": alerts_page()}


def write(check: bool = False) -> list[str]:
    """The stale pages; rewritten unless `check`."""
    stale = []
    for path, new in pages().items():
        if (path.read_text() if path.exists() else "") != new:
            stale.append(str(path.relative_to(ROOT)))
            if not check:
                path.parent.mkdir(exist_ok=True)
                path.write_text(new)
    return stale


def main(argv: list[str]) -> int:
    missing = config_docs.undocumented()
    if missing:
        print("config/docs.py has no words for: " + ", ".join(missing), file=sys.stderr)
        return 1
    check = "--check" in argv
    stale = write(check)
    if check and stale:
        print(f"stale: {', '.join(stale)}; run make docs", file=sys.stderr)
        return 1
    print(("rewrote " + ", ".join(stale)) if stale and not check else "the generated pages are current")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
