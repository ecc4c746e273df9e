"""``docker2aci batch`` and ``docker2aci mirror``: many conversions, a report of each.

This module parses arguments, builds the jobs, shows progress and the summary, writes
the report and maps the outcome to an exit status: 0 every item ok or skipped, 1 an
item failed, 2 usage error, ``128 + N`` stopped by signal ``N`` (130 Ctrl-C, 143
``SIGTERM``, 129 ``SIGHUP``; :func:`docker2aci.jobs.execute`). The report is written in
every case.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .cli_common import (EXIT_ERROR, EXIT_OK, Parser, convert_options, flag, output_flags, path, progress_console,
                         setup_logging, source_flags)
from .errors import Docker2ACIError, UsageError
from .terminal import printable

if TYPE_CHECKING:
    from .batchfile import BatchItem
    from .jobs import JobResult
    from .pipeline import ConvertOptions


def _job_flags(p: argparse.ArgumentParser, *, files: bool) -> None:
    """Flags of every many-image command: output, workers, executor, report; ``files``:
    its sources may be local files (see :func:`~docker2aci.cli_common.source_flags`)."""
    output_flags(p)
    flag(p, "jobs", type=int, default=1, metavar="N",
         help="Convert N images at once, in local worker processes (default 1: one after the other; "
              "--executor dask ignores it)")
    flag(p, "executor", default="local", choices=["local", "dask"],
         help="Where the conversions run: local processes (default) or a Dask distributed cluster")
    flag(p, "scheduler", metavar="tcp://HOST:PORT",
         help="The Dask scheduler (with --executor dask); its workers must see --output-dir and --cache-dir "
              "at the same paths")
    flag(p, "report", type=path, metavar="FILE.json", help="Write the per-item report (JSON) to FILE")
    flag(p, "json", action="store_true", help="Print the report (JSON) instead of the summary")
    flag(p, "debug", action="store_true", help="Enables debug messages")
    # the mirror asks the registry what each tag names itself: a tag record would hide a move
    source_flags(p, every_platform=True, files=files, pull_policy=files)


def batch_parser(prog: str) -> argparse.ArgumentParser:
    """The parser of ``docker2aci batch``."""
    p = Parser(prog=f"{prog} batch", allow_abbrev=False,
               description="Convert many images: one source per line of FILE (or a JSON/YAML list with per-item "
                           "options: source, platform, image, output, output_dir (under --output-dir), name, sign, "
                           "sign_passphrase_file, gpg_key, compression, compression_level). A failed item does "
                           "not stop the others; exit status 1 if any failed.")
    p.add_argument("file", metavar="FILE|-", type=path, help="the batch file; - reads standard input")
    _job_flags(p, files=True)
    return p


def mirror_parser(prog: str) -> argparse.ArgumentParser:
    """The parser of ``docker2aci mirror``."""
    p = Parser(prog=f"{prog} mirror", allow_abbrev=False,
               description="Mirror every tag of registry repositories into an appc discovery tree, incrementally: "
                           "unchanged tags cost one request, moved tags are converted again, vanished tags are "
                           "reported (removed with --prune). A repository the catalog no longer lists is reported, "
                           "its ACIs kept (--prune-repos removes them). A killed run is finished by the next.")
    targets = p.add_argument("targets", nargs="+", metavar="HOST/REPO", help="repositories (HOSTs with --all-repos)")
    targets.complete = "none"  # type: ignore[attr-defined]  # not file names (docker2aci.completion)
    flag(p, "all-repos", action="store_true", help="Mirror every repository of the registry (/v2/_catalog)")
    flag(p, "include", action="append", default=[], metavar="PATTERN",
         help="Mirror only tags matching this shell pattern (repeatable)")
    flag(p, "exclude", action="append", default=[], metavar="PATTERN",
         help="Leave out tags matching this shell pattern (repeatable; wins over --include)")
    flag(p, "name-prefix", metavar="PREFIX",
         help="AC name prefix of the mirrored images, e.g. example.com/mirror (default: the registry host)")
    flag(p, "prune", action="store_true",
         help="Remove the ACIs of tags that vanished from their repository's tag list")
    flag(p, "prune-repos", action="store_true",
         help="With --all-repos and --prune: also remove the ACIs of repositories the catalog no longer lists "
              "(a catalog lists only what the credentials may see: give it only when they see every repository)")
    _job_flags(p, files=False)
    return p


def _base_options(args: argparse.Namespace) -> ConvertOptions:
    from .compression import Compression

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.scheduler is not None and args.executor != "dask":  # else ignored: the items ran here
        raise UsageError(f"--scheduler {printable(args.scheduler)}: only with --executor dask")
    if args.report:
        from .report import check_report_path

        check_report_path(args.report)
    return convert_options(args, output_dir=args.output_dir, compression=Compression(args.compression),
                            compression_level=args.compression_level)


def _item_options(base: ConvertOptions, overrides: Sequence[tuple[str, object]], where: str) -> ConvertOptions:
    """``base`` with a batch item's options; a relative ``output_dir`` is under the base's."""
    import os

    from .compression import Compression, check_level
    from .manifest import Platform
    from .pipeline import ALL_PLATFORMS

    values = dict(overrides)
    if "compression_level" in values:
        try:
            check_level(int(values["compression_level"]))  # type: ignore[call-overload]
        except ValueError as err:
            raise UsageError(f"{where}: compression_level: {err}") from err
    platform = values.get("platform")
    if isinstance(platform, str) and platform != ALL_PLATFORMS:
        try:
            Platform.parse(platform)
        except Docker2ACIError as err:
            raise UsageError(f"{where}: platform: {err}") from err
    if "compression" in values:
        try:
            values["compression"] = Compression(values["compression"])
        except ValueError as err:
            raise UsageError(f"{where}: compression {values['compression']!r}: expected one of "
                             f"{', '.join(c.value for c in Compression)}") from err
    if "output_dir" in values:
        top = os.path.abspath(base.output_dir)
        inside = os.path.normpath(os.path.join(top, str(values["output_dir"])))
        if inside != top and not inside.startswith(top + os.sep):
            raise UsageError(f"{where}: output_dir {values['output_dir']!r} leads out of --output-dir {base.output_dir}")
        values["output_dir"] = inside
    from .pipeline import check_naming

    try:
        options = dataclasses.replace(base, **values)  # type: ignore[arg-type]  # checks each field
        check_naming(options)
    except UsageError as err:
        raise UsageError(f"{where}: {err}") from err
    return options


class _Progress:
    """A rich progress bar of items done, on a terminal (:func:`~docker2aci.cli_common.progress_console`);
    nothing elsewhere."""

    def __init__(self, enabled: bool) -> None:
        self._bar = None
        self._task = None
        console = progress_console() if enabled else None
        if console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), transient=True, console=console)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def start(self, total: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("Converting", total=total)

    def done(self, _index: int, result: JobResult) -> None:
        if self._bar is not None and self._task is not None:
            from rich.markup import escape

            # the description is rich markup: a source's brackets are text, its controls escaped
            shown = escape(printable(result.source)[-50:])
            self._bar.update(self._task, advance=1, description=f"{result.status}: {shown}")


def _finish(results: list[JobResult], stopped_by: int | None, args: argparse.Namespace, title: str) -> int:
    """Write the report, print the summary (or the report), return the exit status;
    ``stopped_by`` is the signal that interrupted the run, if one did."""
    from .interrupts import exit_status
    from .report import any_failed, print_summary, report_json, write_report

    if args.report:
        write_report(args.report, results)
    if args.json:
        sys.stdout.write(report_json(results))
    else:
        print_summary(results, title=title)
    if stopped_by is not None:
        return exit_status(stopped_by)
    return EXIT_ERROR if any_failed(results) else EXIT_OK


def cmd_batch(argv: Sequence[str], prog: str) -> int:
    """``docker2aci batch FILE|-``: see :func:`batch_parser`."""
    from .batchfile import read_batch

    args = batch_parser(prog).parse_args(list(argv))
    setup_logging(args.debug)
    base = _base_options(args)
    items = read_batch(args.file, check=lambda item: _item_options(base, item.options, item.where))
    if not items:  # an empty file, or only comments: a mistake more often than a plan (new-user trial)
        logging.getLogger("docker2aci").warning("%s lists no image: nothing to convert",
                                                "standard input" if args.file == "-" else args.file)
    with _claims(base, args.executor) as claims_dir:
        return _run_batch(args, dataclasses.replace(base, claims_dir=claims_dir), items)


@contextlib.contextmanager
def _claims(base: ConvertOptions, executor: str) -> Iterator[str]:
    """A directory where the items of one batch claim the files they write (see
    ``ConvertOptions.claims_dir``): an item never overwrites a file another one claimed
    first (the earlier in the list with one worker; with more, the first to get there)
    Local workers share the temporary directory; a Dask cluster's see the output
    directory. Removed at the end."""
    import os

    from .atomic import scratch_dir

    where = base.tmp_dir if executor == "local" else os.path.abspath(base.output_dir)
    with scratch_dir(where, ".docker2aci-claims-", "the batch's claims directory") as directory:
        yield directory


def _run_batch(args: argparse.Namespace, base: ConvertOptions, items: Sequence[BatchItem]) -> int:
    from .batchfile import every_item
    from .jobs import SKIPPED, Job, JobResult, execute

    jobs: list[Job] = []
    first: dict[tuple[str, tuple[tuple[str, object], ...]], int] = {}
    duplicates: dict[int, str] = {}
    every_options = every_item(lambda number, item: dataclasses.replace(
        _item_options(base, item.options, item.where), claims_as=f"item {number}"), items)
    for number, (item, options) in enumerate(zip(items, every_options), 1):
        seen = first.setdefault((item.source, item.options), number)
        if seen != number:
            duplicates[len(jobs)] = f"the same as item {seen}"
        jobs.append(Job(item.source, options))
    runnable = [job for index, job in enumerate(jobs) if index not in duplicates]
    with _Progress(not args.json) as progress:
        progress.start(len(runnable))
        ran, stopped_by = execute(runnable, workers=args.jobs, executor=args.executor, scheduler=args.scheduler,
                                  done=progress.done)
    it = iter(ran)
    results = [JobResult(job.source, SKIPPED, duplicates[index]) if index in duplicates else next(it)
               for index, job in enumerate(jobs)]
    _mark_shared_outputs(results)
    return _finish(results, stopped_by, args, "docker2aci batch")


def _mark_shared_outputs(results: list[JobResult]) -> None:
    """An item whose ACI has the path of an earlier item's was not ok: the file holds one
    of the two (give one of them another ``output`` or ``output_dir``)."""
    from .jobs import FAILED

    owner: dict[str, int] = {}
    for number, result in enumerate(results, 1):
        for aci in result.acis:
            first = owner.setdefault(aci["path"], number)
            if first != number and result.status != FAILED:
                result.status = FAILED
                result.error = (f"its ACI {aci['path']} is also item {first}'s: the file holds only one of them; "
                                f"give one an 'output' or 'output_dir' of its own")
        if result.status == FAILED:  # the report lists a file under the one item it is first said to be
            result.acis = [aci for aci in result.acis if owner[aci["path"]] == number]


def cmd_mirror(argv: Sequence[str], prog: str) -> int:
    """``docker2aci mirror HOST/REPO... --output-dir DIR``: see :func:`mirror_parser`."""
    from .mirror import MirrorSpec, mirror

    args = mirror_parser(prog).parse_args(list(argv))
    setup_logging(args.debug)
    base = _base_options(args)
    spec = MirrorSpec(tuple(args.targets), all_repos=args.all_repos, include=tuple(args.include),
                      exclude=tuple(args.exclude), name_prefix=args.name_prefix, prune=args.prune,
                      prune_repos=args.prune_repos)
    try:
        with _Progress(not args.json) as progress:
            results, stopped_by = mirror(spec, base, workers=args.jobs, executor=args.executor,
                                         scheduler=args.scheduler, done=progress.done,
                                         on_plan=lambda jobs: progress.start(len(jobs)))
    except Docker2ACIError as err:
        if not isinstance(err, UsageError):  # the report (and --json) says why nothing was done
            from .jobs import FAILED
            from .report import report_json, write_report

            failed = [_run_entry(args, FAILED, str(err))]
            if args.report:
                write_report(args.report, failed)
            if args.json:
                sys.stdout.write(report_json(failed))
        raise
    except KeyboardInterrupt as interrupt:  # before the tags were planned (waiting for another mirror's lock)
        from .interrupts import signal_of
        from .jobs import SKIPPED

        return _finish([_run_entry(args, SKIPPED, MIRROR_INTERRUPTED)], signal_of(interrupt), args,
                       "docker2aci mirror")
    return _finish(results, stopped_by, args, "docker2aci mirror")


def _run_entry(args: argparse.Namespace, status: str, error: str) -> JobResult:
    """The one report entry of a mirror stopped before its tags (an error, an interrupt):
    :func:`docker2aci.mirror.run_entry` of its targets."""
    from .mirror import run_entry

    return run_entry(args.targets, status, error)


MIRROR_INTERRUPTED = "interrupted before its tags were listed, or while it recorded them; the next run finishes it"
"""The error of the one report entry of a mirror interrupted outside its conversions."""
