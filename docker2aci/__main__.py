"""``python -m docker2aci``: the command line (:mod:`docker2aci.console`)."""

from .console import entry

entry()
