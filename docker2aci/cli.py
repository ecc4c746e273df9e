"""The ``docker2aci`` command: a drop-in for the reference tool plus subcommands.

``docker2aci [FLAGS] IMAGE`` (flags with one or two dashes, before or after IMAGE) is
``docker2aci convert``; ``docker2aci run ACI [-- ARGS]`` runs an ACI. This module only
parses arguments, calls one pipeline function, shows progress and maps errors to exit
statuses: 0 success, 1 conversion error, 2 usage error; ``run`` returns the app's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

from . import __version__
from .aci import Compression
from .errors import Docker2ACIError, UsageError
from .pipeline import ConvertedACI, ConvertOptions, convert

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

log = logging.getLogger("docker2aci")

_USAGE = """docker2aci [-debug] [-nosquash] [-compression=(gzip|none)] IMAGE
  Where IMAGE is
    [-image=IMAGE_NAME[:TAG]] FILEPATH
  or
    docker://[REGISTRYURL/]IMAGE_NAME[:TAG]
  or
    docker-daemon:IMAGE_NAME[:TAG] | docker-archive:PATH | oci:DIR[:TAG] | oci-archive:PATH[:TAG]
       docker2aci run [--insecure-options=image] ACI [-- ARGS]"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` owns the exit status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """Add ``--name`` that also works as ``-name`` (Go's flag package)."""
    parser.add_argument(f"--{name}", f"-{name}", **kwargs)  # type: ignore[arg-type]


def _convert_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, usage=_USAGE, allow_abbrev=False,
                description="Convert a Docker or OCI image into an App Container Image (ACI).")
    p.add_argument("image", metavar="IMAGE", help="the image source")
    _flag(p, "nosquash", action="store_true", help="Don't squash layers and output every layer as ACI")
    _flag(p, "image", dest="select", metavar="IMAGE_NAME[:TAG]",
          help="When converting a local file, it selects a particular image to convert. "
               "Format: IMAGE_NAME[:TAG]")
    _flag(p, "debug", action="store_true", help="Enables debug messages")
    _flag(p, "insecure-skip-verify", action="store_true",
          help="Don't verify certificates when fetching images")
    _flag(p, "insecure-allow-http", action="store_true",
          help="Uses unencrypted connections when fetching images")
    _flag(p, "compression", default="gzip", choices=[c.value for c in Compression],
          help="Type of compression to use; allowed values: gzip, none")
    _flag(p, "output-dir", default=".", metavar="DIR", help="Where to write the ACI (default: .)")
    _flag(p, "platform", metavar="OS/ARCH[/VARIANT]",
          help="Platform to pick from a manifest list or index (default: the host's); "
               "'all' converts every platform")
    _flag(p, "tmp-dir", metavar="DIR", help="Where to unpack layers (default: $TMPDIR)")
    _flag(p, "creds", metavar="USER:PASS", help="Registry credentials (default: ~/.docker/config.json)")
    _flag(p, "cert-dir", metavar="DIR", help="CA certificates (*.crt) for the registry, as Docker's certs.d")
    _flag(p, "cache-dir", metavar="DIR", help="Blob and conversion cache (default: ~/.cache/docker2aci)")
    _flag(p, "no-cache", action="store_true", help="Convert again even if this manifest was converted before")
    _flag(p, "json", action="store_true", help="Print one JSON object per ACI (JSON Lines)")
    return p


def _run_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"{prog} run", allow_abbrev=False,
                description="Run an ACI's app (stage fly: chroot in a private mount namespace).")
    p.add_argument("aci", metavar="ACI")
    _flag(p, "insecure-options", default="", metavar="LIST",
          help="Comma-separated checks to skip; 'image' skips the signature check")
    _flag(p, "exec", dest="exec_", metavar="CMD", help="Run CMD instead of the image's exec")
    _flag(p, "stage", default="fly", choices=["fly"], help="Isolation stage (fly)")
    _flag(p, "debug", action="store_true", help="Enables debug messages")
    return p


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    # urllib3's debug lines carry full URLs (presigned blob redirects): never shown
    logging.getLogger("urllib3").setLevel(logging.INFO)


def _print_text(acis: list[ConvertedACI], shown_paths: list[str]) -> None:
    app = acis[-1].manifest.get("app", {})
    out: list[str] = []
    if app.get("mountPoints"):
        out.append("\nConverted volumes:")
        for mp in app["mountPoints"]:
            out.append(f'\tname: "{mp["name"]}", path: "{mp["path"]}", '
                       f'readOnly: {str(mp.get("readOnly", False)).lower()}')
    if app.get("ports"):
        out.append("\nConverted ports:")
        for port in app["ports"]:
            out.append(f'\tname: "{port["name"]}", protocol: "{port["protocol"]}", port: {port["port"]}, '
                       f'count: {port["count"]}, socketActivated: {str(port["socketActivated"]).lower()}')
    out.append("\nGenerated ACI(s):")
    out.extend(shown_paths)
    out.append("\nImage ID(s):")
    out.extend(f"{aci.image_id} {shown}" for aci, shown in zip(acis, shown_paths))
    print("\n".join(out))


def _print_json(acis: list[ConvertedACI]) -> None:
    for aci in acis:
        print(json.dumps({"path": aci.path, "image_id": aci.image_id, "name": aci.name,
                          "labels": aci.labels, "manifest_digest": aci.manifest_digest},
                         separators=(",", ":")))


def _progress_hook(enabled: bool):  # type: ignore[no-untyped-def]
    """Rich progress bars on a terminal (one per download with bytes and rate, one for
    the layers read), else nothing."""
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TaskID, TextColumn,
                               TransferSpeedColumn)

    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), transient=True, console=Console(stderr=True))
    tasks: dict[str, TaskID] = {}

    def hook(task: str, done: int, total: int | None) -> None:
        if task == "layers":  # a count of layers, not bytes
            if task not in tasks:
                tasks[task] = progress.add_task("Reading layers", total=None, visible=True)
            progress.update(tasks[task], description=f"Read {done}/{total} layers")
            return
        if task not in tasks:
            tasks[task] = progress.add_task(f"Downloading {task[:19]}", total=total)
        progress.update(tasks[task], completed=done, total=total)

    return progress, hook


def cmd_convert(argv: Sequence[str], prog: str) -> int:
    """``docker2aci [convert] [FLAGS] IMAGE``: see the module docstring."""
    args = _convert_parser(prog).parse_args(list(argv))
    _setup_logging(args.debug)
    options = ConvertOptions(output_dir=args.output_dir, image=args.select, platform=args.platform,
                             compression=Compression(args.compression), tmp_dir=args.tmp_dir,
                             creds=args.creds, cert_dir=args.cert_dir,
                             insecure_skip_verify=args.insecure_skip_verify,
                             insecure_allow_http=args.insecure_allow_http, cache_dir=args.cache_dir,
                             use_cache=not args.no_cache, squash=not args.nosquash)
    progress, hook = _progress_hook(sys.stderr.isatty() and not args.json)
    if progress is not None:
        with progress:
            acis = convert(args.image, options, hook)
    else:
        acis = convert(args.image, options)
    if args.json:
        _print_json(acis)
    else:
        shown = [os.path.normpath(os.path.join(args.output_dir, os.path.basename(a.path))) for a in acis]
        _print_text(acis, shown)
    return EXIT_OK


def cmd_run(argv: Sequence[str], prog: str) -> int:
    """``docker2aci run [FLAGS] ACI [-- ARGS]``: run an ACI's app; returns its exit status."""
    argv = list(argv)
    extra: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = _run_parser(prog).parse_args(argv)
    _setup_logging(args.debug)
    insecure = frozenset(o.strip() for o in args.insecure_options.split(",") if o.strip())
    unknown = insecure - {"image"}
    if unknown:
        raise UsageError(f"--insecure-options: unknown option(s) {', '.join(sorted(unknown))}")
    import shlex

    from runner import run_aci

    exec_override = shlex.split(args.exec_) if args.exec_ else None
    return run_aci(args.aci, extra, exec_override=exec_override, stage=args.stage,
                   insecure_options=insecure)


_COMMANDS = {"convert": cmd_convert, "run": cmd_run}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``docker2aci`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "docker2aci"
    if argv and argv[0] in ("--version", "-version"):
        print(f"docker2aci version {__version__}\nappc version 0.8.11")
        return EXIT_OK
    command = cmd_convert
    if argv and argv[0] in _COMMANDS:
        command = _COMMANDS[argv.pop(0)]
    try:
        return command(argv, prog)
    except UsageError as err:
        print(f"Error: {err}", file=sys.stderr)
        if command is cmd_convert:
            print(f"Usage: {_USAGE}", file=sys.stderr)
        return EXIT_USAGE
    except Docker2ACIError as err:
        log.debug("traceback", exc_info=True)
        print(f"Error: conversion error: {err}" if command is cmd_convert else f"Error: {err}",
              file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
