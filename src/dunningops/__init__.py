"""dunningops: a self-hosted dunning engine whose configuration is code.

Config lives as YAML (``spec``), is diffed against the store (``reconcile``)
and applied to it (``store``), like ``terraform plan`` / ``apply``.
"""

__version__ = "0.1.0"
