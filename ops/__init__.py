"""Operating a running stack: `make status` (ops.status)."""
