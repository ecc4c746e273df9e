"""The ``docker2aci`` console script and ``python -m docker2aci``: :func:`docker2aci.cli.entry`,
with Ctrl-C handled from the first moment.

Importing :mod:`docker2aci.cli` (and what it imports) takes a tenth of a second; a Ctrl-C
then printed a Python ``KeyboardInterrupt`` traceback, where a Ctrl-C a moment later
prints ``Interrupted (SIGINT)`` and exits 130. This module imports nothing but the
standard library's ``sys`` (loaded already), so the same line and status are given
however early the Ctrl-C comes once it runs.
"""

from __future__ import annotations

import sys

_SIGINT = 2
"""``signal.SIGINT`` on every platform docker2aci runs on (POSIX)."""


def entry() -> None:
    """Import and run :func:`docker2aci.cli.entry` (which exits with the command's
    status); a Ctrl-C before its own handling is in place (while the modules load) says
    ``Interrupted (SIGINT)`` on stderr and exits 130, as one during the command does.
    Nothing was made yet, so there is nothing to clean up."""
    try:
        from .cli import entry as run_command

        run_command()
    except KeyboardInterrupt:
        try:
            print("Interrupted (SIGINT)", file=sys.stderr)
        except (KeyboardInterrupt, OSError, ValueError):  # another Ctrl-C, a stderr gone: the status says it
            pass
        sys.exit(128 + _SIGINT)
