"""Stack config -> typed, validated spec and derived topology (no Pulumi resources)."""
from .reader import ConfigError
from .spec import NAMESPACE, Spec, load
from .stackfile import load_stack_file, raw_from_stack_file
from . import versions  # noqa: F401 - the release table (make versions)

__all__ = ["ConfigError", "NAMESPACE", "Spec", "load", "load_stack_file", "raw_from_stack_file"]
