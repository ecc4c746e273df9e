"""What ``batch`` and ``mirror`` tell about their items: the ``--report`` JSON file, a
summary table on a terminal, and plain lines on a pipe."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from .atomic import is_special, write_small_file
from .errors import OutputError, UsageError
from .jobs import FAILED, JobResult
from .terminal import printable


def report_json(results: Sequence[JobResult]) -> str:
    """The report: a JSON list with one object per item (:meth:`JobResult.to_json`), in the
    items' order."""
    return json.dumps([r.to_json() for r in results], indent=2) + "\n"


def check_report_path(path: str) -> None:
    """Refuse, before any work, a ``--report`` path the report could not be written to
    once the work is done: a directory, or a file in a directory that is missing or that
    this user cannot write.

    Raises:
        UsageError: naming the path and what is wrong with it.
    """
    full = os.path.abspath(path)
    parent = os.path.dirname(full)
    if os.path.isdir(full):
        raise UsageError(f"--report {path}: is a directory")
    if is_special(full):  # a device or a FIFO is written to, not replaced
        if not os.access(full, os.W_OK):
            raise UsageError(f"--report {path}: cannot write to it")
        return
    if not os.path.isdir(parent):
        raise UsageError(f"--report {path}: there is no directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--report {path}: cannot write in {parent}")


def write_report(path: str, results: Sequence[JobResult]) -> None:
    """Write the report to ``path`` atomically (mode 0644), or to the device or FIFO it
    is (:func:`~docker2aci.atomic.write_small_file`).

    Raises:
        OutputError: it cannot be written.
    """
    try:
        write_small_file(path, report_json(results).encode(), 0o644)
    except OSError as err:
        raise OutputError(f"writing the report {path}: {err.strerror or err}") from err


def any_failed(results: Sequence[JobResult]) -> bool:
    """Whether an item failed (the command then exits 1)."""
    return any(r.status == FAILED for r in results)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def print_summary(results: Sequence[JobResult], *, stream: TextIO | None = None, title: str = "docker2aci") -> None:
    """A rich table (item, status, ACIs, MB fetched, seconds) with totals on a terminal;
    one tab-separated line per item (``status source path...``, then the error) on a pipe."""
    stream = stream or sys.stdout
    counts = Counter(r.status for r in results)
    totals = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    if not stream.isatty():
        for r in results:
            fields = [r.status, r.source, *(a["path"] for a in r.acis)]
            if r.error:
                fields.append(r.error)
            # one line, one field each: a tab, newline or control an error quotes is escaped
            print("\t".join(printable(f) for f in fields), file=stream)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, caption=f"{len(results)} items: {totals}; "
                                       f"{_mb(sum(r.bytes_fetched for r in results))} MB fetched")
    table.add_column("item", overflow="fold")
    table.add_column("status")
    table.add_column("ACIs", overflow="fold")
    table.add_column("MB fetched", justify="right")
    table.add_column("s", justify="right")
    styles = {"ok": "green", "failed": "bold red", "skipped": "yellow"}
    for r in results:
        # rich strips BEL, BS and CR but lets ESC through: every cell is printable() first
        acis = escape("\n".join(printable(os.path.basename(a["path"])) for a in r.acis))
        status = f"[{styles.get(r.status, 'cyan')}]{r.status}[/]"
        error = f"\n[red]{escape(printable(r.error))}[/]" if r.error and r.status == FAILED else ""
        table.add_row(escape(printable(r.source)) + error, status, acis, _mb(r.bytes_fetched), f"{r.seconds:.1f}")
    Console(file=stream).print(table)
