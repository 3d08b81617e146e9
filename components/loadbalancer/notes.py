"""What `make review` says of the load balancers' scripts (steps/plan.py Note)."""
from __future__ import annotations

from ..steps.plan import Note

NOTES = {
    "vip.sh": Note(check="the VIP accepts connections"),
}
