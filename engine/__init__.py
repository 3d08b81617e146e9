"""A model of what the real Pulumi engine and hakube's providers do on a
`pulumi up`, rule by rule (see ../shared/ENGINE.md and the sources each rule
cites). The lab executes the steps it plans on real hosts; `make review`
prints them. One model, so a lab test passes only where a user's run would.
"""
from .core import Engine, NotRun, Registration, Resource, Step, plain, provider_deletes
from .rules import Diff, diff

__all__ = ["Engine", "NotRun", "Registration", "Resource", "Step", "plain", "provider_deletes", "Diff", "diff"]
