"""``python -m docker2aci``: the command line."""

from .cli import entry

entry()
