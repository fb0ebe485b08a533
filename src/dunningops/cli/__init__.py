"""The command line: parse arguments, call one function, print. A module per command group.

`main.py` holds the `dunningops` group and its error handling, `options.py` the options every
command shares (declared once) and bounded parameter types, `output.py` tables, JSON and the
exit-code contract. Every command starts from an ``App`` (app.py). The engine never imports
this package.
"""

from dunningops.cli.main import cli, main

# Importing the command modules registers their commands on `cli`.
from dunningops.cli import (  # noqa: F401  isort: skip
    adopt,
    alerts,
    config,
    customers,
    cycle,
    daemon,
    drift,
    forecast,
    github,
    inbox,
    incidents,
    ledger,
    members,
    notify,
    templates,
    todos,
    tokens,
)

__all__ = ["cli", "main"]
