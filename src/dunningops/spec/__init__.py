"""Desired state: pydantic models of the YAML config, loading with file:line errors, checks, schema.

Imports nothing else of dunningops but ``errors`` and ``render``'s checks (what validates is what renders).
"""

from dunningops.spec.loader import load_config
from dunningops.spec.state import DesiredState

__all__ = ["DesiredState", "load_config"]
