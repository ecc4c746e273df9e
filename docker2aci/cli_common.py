"""What every ``docker2aci`` command shares: exit statuses, the argument parser that
raises instead of exiting, Go-style flags and logging set-up."""

from __future__ import annotations

import argparse
import logging
import sys

from .errors import UsageError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` owns the exit status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def flag(parser: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """Add ``--name`` that also works as ``-name`` (Go's flag package)."""
    parser.add_argument(f"--{name}", f"-{name}", **kwargs)  # type: ignore[arg-type]


def setup_logging(debug: bool) -> None:
    """Log to stderr: INFO, or DEBUG with ``--debug``."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    # urllib3's debug lines carry full URLs (presigned blob redirects): never shown
    logging.getLogger("urllib3").setLevel(logging.INFO)
