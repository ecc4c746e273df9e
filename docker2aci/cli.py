"""The ``docker2aci`` command: a drop-in for the reference tool plus subcommands.

``docker2aci [FLAGS] IMAGE`` (flags with one or two dashes, before or after IMAGE) is
``docker2aci convert``; ``docker2aci run IMAGE [-- ARGS]`` runs an image (converting it
first when it is not an ACI), ``fetch`` converts, verifies and renders it, ``gc`` cleans
the tree store and the cache; ``keys``, ``sign``,
``verify`` and ``trust`` manage signing keys, signatures and the trust store
(:mod:`docker2aci.signing`, :mod:`docker2aci.trust`); ``completion`` prints a bash, zsh or
fish completion script of every command of :data:`PARSERS`. This module only
parses arguments, calls one pipeline function, shows progress and maps errors to exit
statuses: 0 success, 1 conversion error, 2 usage error; ``run`` returns the app's.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

if TYPE_CHECKING:
    from .pipeline import ConvertedACI
    from .prerun import SourceImage

from . import __version__, stdio
from .cli_common import CACHE_DIR_DEFAULT, EXIT_ERROR, EXIT_OK, EXIT_USAGE, TRUST_DIR_DEFAULT
from .cli_common import Parser as _Parser
from .cli_common import convert_options as _convert_options
from .cli_common import flag as _flag
from .cli_common import json_failure as _json_failure
from .cli_common import output_flags as _output_flags
from .cli_common import path as _path
from .cli_common import progress_console as _progress_console
from .cli_common import setup_logging as _setup_logging
from .cli_common import source_flags as _source_flags
from .errors import Docker2ACIError, ExecError, OutputError, SeveralImages, SigningError, UsageError
from .interrupts import exit_status, signal_of, unwinding_on_termination
from .terminal import CONTINUATION, go_quoted, printable

log = logging.getLogger("docker2aci")

_USAGE = """docker2aci [-debug] [-nosquash] [-compression=(gzip|none|xz|bzip2)] IMAGE
  Where IMAGE is
    [-image=IMAGE_NAME[:TAG]] FILEPATH
  or
    docker://[REGISTRYURL/]IMAGE_NAME[:TAG]
  or
    docker-daemon:IMAGE_NAME[:TAG] | docker-archive:PATH[:NAME[:TAG]] | oci:DIR[:TAG] | oci-archive:PATH[:TAG]
  Signing: [--sign KEYFILE [--sign-passphrase-file FILE] | --gpg-key ID] writes <ACI>.asc
       docker2aci convert [OPTIONS] IMAGE      (the same: for an IMAGE file named like a command)
       docker2aci run [--insecure-options=image] [--stage fly|isolated] [--volume ...] IMAGE [-- ARGS]
       docker2aci fetch [--json] IMAGE         (convert, verify, render; prints <image_id> <path>)
       docker2aci gc [--grace DURATION] [--cache-grace DURATION]  (remove ended pods, unused trees and cache)
       docker2aci validate|inspect ACI...; docker2aci render ACI DIR
       docker2aci batch FILE|-                 (convert every image a batch file lists)
       docker2aci mirror HOST/REPO...          (convert repositories; --all-repos HOST for a whole registry)
       docker2aci discover NAME[:VERSION]      (find an ACI and its signature by appc discovery)
       docker2aci keys|sign|verify|trust ... (see docker2aci COMMAND --help)
       docker2aci completion bash|zsh|fish     (print the shell completion script)"""


def _convert_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, usage=_USAGE, allow_abbrev=False,
                description="Convert a Docker or OCI image into an App Container Image (ACI).")
    p.add_argument("image", metavar="IMAGE", help="the image source").complete = "source"
    _flag(p, "nosquash", action="store_true", help="Don't squash layers and output every layer as ACI")
    _flag(p, "debug", action="store_true", help="Enables debug messages")
    _output_flags(p)
    _flag(p, "json", action="store_true", help="Print one JSON object per ACI (JSON Lines); on failure one "
                                               "object: {\"source\", \"status\": \"failed\", \"error\", ...}")
    _source_flags(p, every_platform=True)
    return p


def _image_flags(p: argparse.ArgumentParser) -> None:
    """The flags of run and fetch that check and store the image."""
    _flag(p, "insecure-options", default="", metavar="LIST",
          help="Comma-separated checks to skip; 'image' skips the signature check")
    _flag(p, "trust-dir", type=_path, metavar="DIR",
          help=f"The trust store the signature is checked against (default: {TRUST_DIR_DEFAULT})")
    _flag(p, "debug", action="store_true", help="Enables debug messages")
    _source_flags(p, every_platform=False)


_IMAGE_HELP = ("an ACI file (*.aci), or an image source to convert first (docker://REF, docker-archive:PATH, "
               "oci:DIR[:TAG], oci-archive:PATH[:TAG], docker-daemon:REF, or a path)")


def _run_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"{prog} run", allow_abbrev=False,
                usage=f"{prog} run [FLAGS] IMAGE [-- ARGS...]",
                description="Run an image's app. The image is converted first when it is not an ACI (through "
                            "the conversion cache), verified, rendered once into the tree store and run on a "
                            "writable layer of its own. Stages: isolated (default where runc works: "
                            "namespaces, cgroup limits, Docker's default capabilities) or fly (chroot in a "
                            "private mount namespace, host pid and network).")
    p.add_argument("aci", metavar="IMAGE", help=_IMAGE_HELP).complete = "source"
    _image_flags(p)
    _flag(p, "exec", dest="exec_", metavar="CMD",
          help="Run CMD instead of the image's exec (split into words as a POSIX shell would, "
               "without expansions: '/bin/sh -c \"id\"')")
    _flag(p, "stage", choices=["fly", "isolated"],
          help="Isolation stage (default: isolated where runc can run, else fly with a warning)")
    _flag(p, "volume", action="append", default=[], metavar="NAME,kind=host,source=PATH[,readOnly=true]",
          help="Mount a host directory (or kind=empty: a new one) on the image's mount point NAME; repeatable")
    _flag(p, "mount", action="append", default=[], metavar="volume=NAME,target=PATH",
          help="Mount the volume NAME at PATH (a mount point the image does not declare); repeatable")
    _flag(p, "set-env", action="append", default=[], metavar="NAME=VALUE",
          help="Set an environment variable of the app (overrides the image's); repeatable")
    _flag(p, "hostname", help="isolated: the app's host name")
    _flag(p, "net", choices=["none", "host"], help="isolated: network (default: none, only lo)")
    _flag(p, "memory", metavar="SIZE",
          help="isolated: memory limit in rkt's units: M, G powers of 1000, Mi, Gi of 1024 (128M, 1Gi)")
    _flag(p, "cpu", metavar="CPU", help="isolated: CPU limit (500m, or cores)")
    _flag(p, "no-overlay", action="store_true",
          help="Give the app a private copy of the tree instead of an overlay on it")
    return p


def _fetch_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"{prog} fetch", allow_abbrev=False,
                description="Convert an image if the conversion cache lacks it, verify it and render it into "
                            "the tree store; print '<image_id> <path>' (the tree: manifest and rootfs/), or "
                            "a JSON object with --json. Safe when many callers race for one image.")
    p.add_argument("source", metavar="IMAGE", help=_IMAGE_HELP).complete = "source"
    _image_flags(p)
    _flag(p, "json", action="store_true",
          help="Print {\"image_id\", \"path\", \"name\", \"labels\"} as one JSON object "
               "(on failure: {\"source\", \"status\": \"failed\", \"error\", ...})")
    return p


def _gc_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"{prog} gc", allow_abbrev=False,
                description="Remove the pods of ended runs, the rendered trees no run uses, and the cached "
                            "conversions and blobs not used within --cache-grace.")
    _flag(p, "cache-dir", type=_path, metavar="DIR", help=f"The cache and tree store (default: {CACHE_DIR_DEFAULT})")
    _flag(p, "grace", default="0s", metavar="DURATION",
          help="Keep trees used more recently than this (e.g. 30m, 24h; default 0s)")
    _flag(p, "cache-grace", default="24h", metavar="DURATION",
          help="Keep cached conversions and blobs used more recently than this (default 24h, as rkt image gc)")
    _flag(p, "keep-cache", action="store_true", help="Leave the cached conversions and blobs alone")
    _flag(p, "json", action="store_true", help="Print what was removed and kept as one JSON object; on failure "
                                               "one object: {\"source\": the cache directory, \"status\": \"failed\", "
                                               "\"error\", ...}")
    _flag(p, "debug", action="store_true", help="Enables debug messages")
    return p


def _print_text(acis: list[ConvertedACI], shown_paths: list[str], signatures: list[str] | None = None) -> None:
    # the image's app: with --nosquash only the top layer's ACI (the first) has one
    app = next((aci.manifest["app"] for aci in acis if aci.manifest.get("app")), {})
    out: list[str] = []
    if app.get("mountPoints"):
        out.append("\nConverted volumes:")
        for mp in app["mountPoints"]:
            out.append(f'\tname: "{mp["name"]}", path: {go_quoted(mp["path"])}, '
                       f'readOnly: {str(mp.get("readOnly", False)).lower()}')
    if app.get("ports"):
        out.append("\nConverted ports:")
        for port in app["ports"]:
            out.append(f'\tname: "{port["name"]}", protocol: "{port["protocol"]}", port: {port["port"]}, '
                       f'count: {port["count"]}, socketActivated: {str(port["socketActivated"]).lower()}')
    out.append("\nGenerated ACI(s):")
    out.extend(shown_paths)
    if signatures:
        out.append("\nSignature(s):")
        out.extend(signatures)
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
    the layers read; :func:`~docker2aci.cli_common.progress_console`), else nothing."""
    console = _progress_console() if enabled else None
    if console is None:
        return None, None
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        Task,
        TaskID,
        TextColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    class BytesOnly(ProgressColumn):
        """A byte column, left empty on the bar of a count (the layers read: it showed
        ``0/? bytes ?``)."""

        def __init__(self, inner: ProgressColumn) -> None:
            super().__init__()
            self.inner = inner

        def render(self, task: Task) -> Any:
            return Text("") if task.fields.get("count") else self.inner.render(task)

    progress = Progress(TextColumn("{task.description}"), BarColumn(), BytesOnly(DownloadColumn()),
                        BytesOnly(TransferSpeedColumn()), transient=True, console=console)
    tasks: dict[str, TaskID] = {}

    def hook(task: str, done: int, total: int | None) -> None:
        if task == "layers":  # a count of layers, not bytes
            if task not in tasks:
                tasks[task] = progress.add_task("Reading layers", total=total, count=True)
            progress.update(tasks[task], description=f"Read {done}/{total} layers", completed=done, total=total)
            return
        if task not in tasks:
            tasks[task] = progress.add_task(f"Downloading {task[:19]}", total=total)
        progress.update(tasks[task], completed=done, total=total)

    return progress, hook


def cmd_convert(argv: Sequence[str], prog: str) -> int:
    """``docker2aci [convert] [FLAGS] IMAGE``: see the module docstring."""
    from .compression import Compression
    from .pipeline import convert

    args = _convert_parser(prog).parse_args(list(argv))
    _setup_logging(args.debug)
    options = _convert_options(args, output_dir=args.output_dir, compression=Compression(args.compression),
                               compression_level=args.compression_level, squash=not args.nosquash)
    progress, hook = _progress_hook(not args.json)
    with _json_failure(args.json, args.image):
        if progress is not None:
            with progress:
                acis = convert(args.image, options, hook)
        else:
            acis = convert(args.image, options)
    if args.json:
        _print_json(acis)
    else:
        if args.nosquash:  # listed in the reference's order, the order it wrote them: base first, top last
            acis = acis[::-1]
        shown = [os.path.normpath(os.path.join(args.output_dir, os.path.basename(a.path))) for a in acis]
        signed = bool(args.sign or args.gpg_key)
        _print_text(acis, shown, [f"{p}.asc" for p in shown] if signed else None)
    return EXIT_OK


def _insecure_options(text: str) -> frozenset[str]:
    insecure = frozenset(o.strip() for o in text.split(",") if o.strip())
    unknown = insecure - {"image"}
    if unknown:
        raise UsageError(f"--insecure-options: unknown option(s) {', '.join(sorted(unknown))}")
    return insecure


def cmd_run(argv: Sequence[str], prog: str) -> int:
    """``docker2aci run [FLAGS] IMAGE [-- ARGS]``: run an image's app; returns its exit
    status."""
    argv = list(argv)
    extra: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = _run_parser(prog).parse_args(argv)
    _setup_logging(args.debug)
    insecure = _insecure_options(args.insecure_options)
    from runner import Isolation, run_aci
    from runner.ocispec import check_cpu_limit, check_hostname, check_memory_limit, parse_cpu, parse_memory
    from runner.spec import parse_set_env, split_exec
    from runner.volumes import parse_mount, parse_volume

    from .prerun import is_aci_path, using_converted

    def flagged(name: str, check: Callable[[str], Any], value: str) -> Any:
        """``check(value)``, its error naming the flag (``memory '12Q': ...`` named none)."""
        try:
            return check(value)
        except Docker2ACIError as err:
            text = str(err)
            raise UsageError(text if text.startswith(name) else f"{name}: {text}") from err

    try:  # every option is checked before any work: a usage error exits 2
        volumes = [flagged("--volume", parse_volume, text) for text in args.volume]
        mounts = [parse_mount(text) for text in args.mount]
        unmatched = {m["name"] for m in mounts} - {v.name for v in volumes}
        if unmatched:
            raise UsageError(f"--mount names volume(s) {', '.join(sorted(unmatched))} that no --volume gives")
        set_env = dict(parse_set_env(text) for text in args.set_env)
        # the range the runtime takes too: "--memory 1" passed here and failed later with status 1
        for name, value, check in (("--memory", args.memory, lambda t: check_memory_limit(parse_memory(t))),
                                   ("--cpu", args.cpu, lambda t: check_cpu_limit(parse_cpu(t))),
                                   ("--hostname", args.hostname, check_hostname)):
            if value is not None:
                flagged(name, check, value)
        exec_override = list(split_exec(args.exec_)) if args.exec_ is not None else None
    except Docker2ACIError as err:
        raise UsageError(str(err)) from err
    if exec_override == []:
        raise UsageError("--exec is empty: give the program to run")
    isolation = Isolation(hostname=args.hostname, net=args.net, memory=args.memory, cpu=args.cpu)
    progress, hook = _progress_hook(True)
    options = None if is_aci_path(args.aci) else _convert_options(args)

    def run(image: SourceImage) -> int:
        if progress is not None:
            progress.stop()
        return run_aci(image.aci, extra, exec_override=exec_override, stage=args.stage,
                       insecure_options=insecure, trust_dir=args.trust_dir, isolation=isolation,
                       volumes=volumes, mounts=mounts, set_env=set_env, store_dir=args.cache_dir,
                       image_id=image.image_id, overlay=not args.no_overlay, work_dir=args.tmp_dir,
                       display=args.aci, on_start=image.mark_app_started)

    with progress or contextlib.nullcontext():
        return using_converted(args.aci, options, hook, run)


def cmd_fetch(argv: Sequence[str], prog: str) -> int:
    """``docker2aci fetch [FLAGS] IMAGE``: convert, verify and render; print
    ``<image_id> <path>`` or JSON."""
    args = _fetch_parser(prog).parse_args(list(argv))
    _setup_logging(args.debug)
    insecure = _insecure_options(args.insecure_options)
    from .prerun import fetch

    progress, hook = _progress_hook(not args.json)
    with _json_failure(args.json, args.source), progress or contextlib.nullcontext():
        image = fetch(args.source, _convert_options(args), store_dir=args.cache_dir, insecure_options=insecure,
                      trust_dir=args.trust_dir, progress=hook)
    if args.json:
        print(json.dumps(image.to_json(), separators=(",", ":")))
    else:
        print(f"{image.image_id} {image.path}")
    return EXIT_OK


def cmd_gc(argv: Sequence[str], prog: str) -> int:
    """``docker2aci gc``: remove ended pods, unused trees and unused cache entries."""
    args = _gc_parser(prog).parse_args(list(argv))
    _setup_logging(args.debug)
    grace = parse_duration(args.grace)
    cache_grace = parse_duration(args.cache_grace, "--cache-grace")
    from runner.pod import gc_pods
    from runner.treestore import TreeStore, default_store_dir

    from .prerun import gc_work_dirs
    from .store import CACHE_SUBDIRS, CacheGcReport, check_trusted_subdirs, gc_cache

    root = args.cache_dir or default_store_dir()
    if args.cache_dir and not os.path.lexists(root):  # a typo found nothing to collect, silently
        log.warning("--cache-dir %s does not exist: nothing to collect", printable(root))
    with _json_failure(args.json, root):
        try:
            # first: another user's directory is refused before anything in it is unmounted or
            # removed (a pods/ link it planted would lead root's gc to delete elsewhere)
            store = TreeStore(root)
            check_trusted_subdirs(root, CACHE_SUBDIRS)
            pods = gc_pods(root)
            work_dirs = gc_work_dirs(root)
            report = store.gc(grace)
            cache = CacheGcReport() if args.keep_cache else gc_cache(root, cache_grace)
        except OSError as err:  # a cache directory that is a file, unreadable ...
            raise OutputError(f"--cache-dir {root}: {err.strerror or err}"
                              + (f" ({err.filename})" if err.filename and err.filename != root else "")) from err
    if args.json:
        print(json.dumps({"pods_removed": pods.removed, "pods_in_use": pods.in_use, "work_dirs_removed": work_dirs,
                          "trees_removed": report.removed, "trees_in_use": report.in_use,
                          "trees_recent": report.recent, "partial_trees_removed": report.partial,
                          "conversions_removed": cache.conversions_removed,
                          "conversions_in_use": cache.conversions_in_use,
                          "conversions_recent": cache.conversions_recent, "blobs_removed": cache.blobs_removed,
                          "blobs_in_use": cache.blobs_in_use, "blobs_recent": cache.blobs_recent,
                          "locks_removed": cache.locks_removed, "cache_bytes_freed": cache.bytes_freed},
                         separators=(",", ":")))
    else:
        for image_id in report.removed:
            print(f"Removed tree {image_id}")
        for path in pods.removed:
            print(f"Removed pod {path}")
        for path in work_dirs:
            print(f"Removed the work directory of an interrupted conversion: {path}")
        for path in report.partial:
            print(f"Removed what an interrupted render left in the tree store: {path}")
        for key in cache.conversions_removed:
            print(f"Removed cached conversion {key}")
        for digest in cache.blobs_removed:
            print(f"Removed cached blob {digest}")
        if cache.locks_removed:
            print(f"Removed {len(cache.locks_removed)} lock file(s) nobody held")
        print(f"Kept {len(report.in_use)} tree(s) in use and {len(report.recent)} used within "
              f"{_with_unit(args.grace)}")
        if not args.keep_cache:
            conversions = len(cache.conversions_in_use) + len(cache.conversions_recent)
            blobs = len(cache.blobs_in_use) + len(cache.blobs_recent)
            print(f"Kept {conversions} cached conversion(s) and {blobs} blob(s) in use or used within "
                  f"{_with_unit(args.cache_grace)}; freed {cache.bytes_freed} bytes of the cache")
    return EXIT_OK


def _with_unit(duration: str) -> str:
    """A :func:`parse_duration` text as shown: ``90`` is ``90s``."""
    return duration + ("s" if duration[-1:].isdigit() else "")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
_DURATION = re.compile(r"[0-9]+(?:\.[0-9]+)?|(?:[0-9]+(?:\.[0-9]+)?[smhd])+")


def parse_duration(text: str, flag: str = "--grace") -> float:
    """``90``, ``90s``, ``30m``, ``24h``, ``7d``, or several in a row as Go writes a
    duration (``1h30m``, rkt's ``--grace-period`` takes those), as seconds.

    Raises:
        UsageError: anything else, or a negative value (naming ``flag``).
    """
    if _DURATION.fullmatch(text) is None:
        raise UsageError(f"{flag} {text!r}: use a number of seconds, or one with units: 90s, 30m, 1h30m, 24h, 7d")
    if not text[-1].isalpha():
        return float(text)
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text))


def _aci_files_parser(prog: str, name: str, description: str, on_failure: str = "") -> argparse.ArgumentParser:
    p = _Parser(prog=f"{prog} {name}", allow_abbrev=False, description=description)
    _flag(p, "json", action="store_true", help="Print one JSON object per ACI (JSON Lines)" + on_failure)
    p.add_argument("acis", metavar="ACI", nargs="+", type=_path)
    return p


def _validate_parser(prog: str) -> argparse.ArgumentParser:
    return _aci_files_parser(prog, "validate", "Check ACIs against the appc spec: what actool validate checks "
                                               "(the archive, the manifest's schema) and what it lets through (only "
                                               "manifest and rootfs/ at the top, no entry twice, hard links to "
                                               "earlier entries, absolute pathWhitelist entries, no manifest key "
                                               "twice); print each image ID.")


def _inspect_parser(prog: str) -> argparse.ArgumentParser:
    return _aci_files_parser(prog, "inspect", "Describe ACIs: name, labels, image ID, size, compression, "
                                              "entries and layers (the image and its dependencies).",
                             "; an ACI that cannot be read ends them with {\"source\", \"status\": \"failed\", "
                             "\"error\", ...}")


def cmd_validate(argv: Sequence[str], prog: str) -> int:
    """``docker2aci validate ACI...``: exit 0 when every ACI is valid, 1 otherwise."""
    args = _validate_parser(prog).parse_args(list(argv))
    from runner.acitool import validate_aci

    status = EXIT_OK
    for path in args.acis:
        report = validate_aci(path)
        if args.json:
            print(json.dumps({"path": report.path, "valid": report.valid, "image_id": report.image_id,
                              "problems": report.problems}, separators=(",", ":")))
        elif report.valid:
            print(f"{report.path}: valid ACI, image ID {report.image_id}")
        else:
            print(f"{report.path}: invalid ACI")
            for problem in report.problems:
                print(f"  {problem}")
        if not report.valid:
            status = EXIT_ERROR
    return status


def cmd_inspect(argv: Sequence[str], prog: str) -> int:
    """``docker2aci inspect ACI...``: name, labels, image ID, size, compression, layers."""
    args = _inspect_parser(prog).parse_args(list(argv))
    from runner.acitool import inspect_aci

    for path in args.acis:
        with _json_failure(args.json, path):
            info = inspect_aci(path)
        if args.json:
            print(json.dumps(info, separators=(",", ":")))
            continue
        print(f"{info['path']}:\n  name: {printable(str(info['name']))}\n  image ID: {info['image_id']}")
        print("  labels: " + ", ".join(printable(f"{k}={v}") for k, v in sorted(info["labels"].items())))
        print(f"  size: {info['size']} bytes ({info['compression']}), {info['entries']} entries, "
              f"{info['layers']} layer(s)")
        for dep in info["dependencies"]:
            print(printable(f"  depends on: {dep.get('imageName')} {dep.get('imageID', '')}".rstrip()))
        for problem in info["problems"]:
            print(f"  problem: {printable(str(problem))}")
    return EXIT_OK


def _render_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"{prog} render", allow_abbrev=False,
                description="Render an ACI into DIR (DIR/manifest and DIR/rootfs), its dependencies first: looked "
                            "up by name, labels and image ID among the ACIs of --dir directories and the ACI's own "
                            "directory. Every entry is resolved inside DIR whatever its links say.")
    p.add_argument("aci", metavar="ACI", type=_path)
    p.add_argument("dest", metavar="DIR", type=_path, help="a new or empty directory")
    _flag(p, "dir", action="append", default=[], type=_path, metavar="DIR", help="Where else to look for dependencies")
    _flag(p, "debug", action="store_true", help="Enables debug messages")
    return p


def cmd_render(argv: Sequence[str], prog: str) -> int:
    """``docker2aci render ACI DIR``: write DIR/manifest and DIR/rootfs, dependencies applied."""
    args = _render_parser(prog).parse_args(list(argv))
    _setup_logging(args.debug)
    from runner.dependencies import DirectoryResolver
    from runner.fstree import remove_tree

    from .atomic import locked_work_dir, remove_abandoned_work_dirs
    from runner.treestore import render_tree

    dest = os.path.abspath(args.dest)
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise UsageError(f"{args.dest}: not an empty directory")
    resolver = DirectoryResolver([*args.dir, os.path.dirname(os.path.abspath(args.aci))],
                                 hint="; give the directory that holds it with --dir DIR")
    try:
        if os.path.lexists(dest):  # an empty directory (or a mount point, or a link to one): used as it is
            _render_into(args.aci, dest, resolver, render_tree)
        else:  # rendered beside DEST, then renamed: an interrupted render leaves no half tree at DEST
            parent = os.path.dirname(dest)
            os.makedirs(parent, exist_ok=True)
            for path in remove_abandoned_work_dirs(parent, _RENDER_PREFIX):
                log.info("removed %s, left by a render that was killed", path)
            with locked_work_dir(parent, _RENDER_PREFIX, 0o755) as work:
                try:
                    os.chmod(work, 0o755)  # not narrowed by the umask
                    _render_into(args.aci, work, resolver, render_tree)
                    os.rename(work, dest)
                except BaseException:
                    remove_tree(work, make_writable=True, ignore_errors=True)  # an image's tree: any depth
                    raise
    except OSError as err:
        raise OutputError(f"rendering into {args.dest}: {err.strerror or err}") from err
    print(dest)
    return EXIT_OK


_RENDER_PREFIX = ".docker2aci-render-"
"""A render into a new DIR happens in ``<parent>/.docker2aci-render-<random>/`` (its lock
file beside it), renamed to DIR when whole."""


def _render_into(aci: str, directory: str, resolver: object, render_tree: Callable[..., dict]) -> None:
    """DIRECTORY/rootfs, then DIRECTORY/manifest written atomically: a manifest means a whole tree."""
    from .atomic import atomic_file

    rootfs = os.path.join(directory, "rootfs")
    os.mkdir(rootfs)
    manifest = render_tree(aci, rootfs, resolver=resolver)
    with atomic_file(os.path.join(directory, "manifest"), 0o644) as (_, handle):
        handle.write(json.dumps(manifest, indent=2).encode())


def _completion_parser(prog: str) -> argparse.ArgumentParser:
    from .completion import SHELLS

    p = _Parser(prog=f"{prog} completion", allow_abbrev=False,
                description=f"Print the {prog} completion script of SHELL (subcommands, their options, the "
                            "choices of an option, file names). Install: see README.md, 'Shell completion'.")
    p.add_argument("shell", metavar="SHELL", choices=SHELLS, help=f"one of {', '.join(SHELLS)}")
    return p


def cmd_completion(argv: Sequence[str], prog: str) -> int:
    """``docker2aci completion bash|zsh|fish``: print the completion script of every command
    of :data:`PARSERS`."""
    args = _completion_parser(prog).parse_args(list(argv))
    from .completion import render

    parsers = {name: factory(prog) for name, factory in PARSERS.items()}
    sys.stdout.write(render(args.shell, prog, parsers, default="convert",
                            first_options={"--version": "Print the version and exit"}))
    return EXIT_OK


CommandFunction = Callable[[Sequence[str], str], int]
ParserFactory = Callable[[str], argparse.ArgumentParser]


class Command(NamedTuple):
    """A subcommand: ``run(argv, prog)`` runs it and returns the exit status; ``parser(prog)``
    builds its argument parser without running anything (``completion`` walks them)."""

    run: CommandFunction
    parser: ParserFactory


def _lazy_command(module: str, name: str, *, run: str | None = None, parser: str | None = None) -> Command:
    """The command ``name`` of ``docker2aci.<module>``, imported only when it runs or its
    parser is built (OpenPGP is most of the start-up time of a conversion that does not
    sign): ``run`` names its function (default ``cmd_<name>``), ``parser`` its parser
    factory (default ``<name>_parser``). A missing module or function raises ImportError
    or AttributeError when the command is used."""
    def command(argv: Sequence[str], prog: str) -> int:
        function = getattr(importlib.import_module(f".{module}", __package__), run or f"cmd_{name}")
        return function(argv, prog)  # type: ignore[no-any-return]

    def factory(prog: str) -> argparse.ArgumentParser:
        function = getattr(importlib.import_module(f".{module}", __package__), parser or f"{name}_parser")
        return function(prog)  # type: ignore[no-any-return]

    return Command(command, factory)


#: Every subcommand, in the order completion offers them; one line adds a command.
_COMMANDS: dict[str, Command] = {
    "convert": Command(cmd_convert, _convert_parser),
    "run": Command(cmd_run, _run_parser),
    "fetch": Command(cmd_fetch, _fetch_parser),
    "gc": Command(cmd_gc, _gc_parser),
    "validate": Command(cmd_validate, _validate_parser),
    "inspect": Command(cmd_inspect, _inspect_parser),
    "render": Command(cmd_render, _render_parser),
    "keys": _lazy_command("cli_signing", "keys"),
    "sign": _lazy_command("cli_signing", "sign"),
    "verify": _lazy_command("cli_signing", "verify"),
    "trust": _lazy_command("cli_signing", "trust"),
    "batch": _lazy_command("cli_jobs", "batch"),
    "mirror": _lazy_command("cli_jobs", "mirror"),
    "discover": _lazy_command("cli_discovery", "discover"),
    "completion": Command(cmd_completion, _completion_parser),
}

#: Each subcommand's parser factory: ``PARSERS[name](prog)`` builds the parser (importing
#: the command's module then, not before).
PARSERS: dict[str, ParserFactory] = {name: command.parser for name, command in _COMMANDS.items()}


def _print_version(_argv: Sequence[str], _prog: str) -> int:
    """``docker2aci --version``: our version and the appc spec's, as the reference prints them."""
    print(f"docker2aci version {__version__}\nappc version 0.8.11")
    return EXIT_OK


_OTHER_TOOLS_COMMANDS = frozenset({"pull", "copy"})
"""Words other tools convert or pull with (``docker pull``, ``skopeo copy``), typed before a
source: docker2aci has no such command (the reference tool took the source first)."""


def _mistyped_command(word: str) -> str | None:
    """The command ``word`` is a typo of (``inpsect``, ``fecth``), when it can be nothing
    else: a bare word (no transport, no path separator) that names no file; else ``None``.
    A word that is not a command is a source to convert, as the reference reads it."""
    import difflib

    if not word or word.startswith("-") or any(c in word for c in ":/.") or os.path.lexists(word):
        return None
    close = difflib.get_close_matches(word, list(_COMMANDS), n=1, cutoff=0.75)
    return close[0] if close else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``docker2aci`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "docker2aci"
    command: CommandFunction = cmd_convert
    name = "convert"
    if argv and (argv[0] in ("--version", "-version") or argv == ["version"] and not os.path.lexists("version")):
        command = _print_version  # "version": docker's and git's word for it, unless a file has that name
    elif argv and argv[0] in _COMMANDS:
        name = argv.pop(0)
        command = _COMMANDS[name].run
    elif argv and argv[0] == "help" and not os.path.lexists("help"):  # git's and docker's word for it
        argv = [*argv[1:2], "--help"] if argv[1:2] and argv[1] in _COMMANDS else ["--help"]
        command = _COMMANDS[argv.pop(0)].run if argv[0] in _COMMANDS else cmd_convert
    elif argv[1:] and argv[0] in _OTHER_TOOLS_COMMANDS and not os.path.lexists(argv[0]):
        print(f"Error: unknown command {argv[0]!r}: docker2aci converts the SOURCE given first, with no command "
              f"(docker2aci {printable(argv[1])}); see docker2aci --help", file=sys.stderr)
        return EXIT_USAGE
    elif argv and (typo := _mistyped_command(argv[0])):
        print(f"Error: unknown command {argv[0]!r}: did you mean {typo!r}? "
              f"(a file of that name does not exist either; see docker2aci --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        with unwinding_on_termination():  # SIGTERM, SIGHUP: the cleanup of Ctrl-C, then 128 + signum
            return command(argv, prog)
    except UsageError as err:
        if err.unknown_option is not None and (owners := _commands_with(err.unknown_option, name, prog)):
            err = UsageError(f"{err.unknown_option} is not an option of docker2aci {name} but of "
                             f"{', '.join(owners)} (docker2aci {name} --help lists {name}'s)")
        print(f"Error: {printable(str(err), newlines=True)}", file=sys.stderr)
        if command is cmd_convert:
            print(f"Usage: {_USAGE}", file=sys.stderr)
        return EXIT_USAGE
    except Docker2ACIError as err:
        log.debug("traceback", exc_info=True)
        # it may quote an image's, a registry's or an archive's text: a line of that never
        # starts a line of the output; the list of images, one per line as the reference
        # prints it, holds names escaped one by one
        indent = "" if isinstance(err, SeveralImages) else CONTINUATION
        shown = printable(str(err), newlines=True, continuation=indent)
        label = "" if command is not cmd_convert else "signing error: " if isinstance(err, SigningError) \
            else "conversion error: "  # the reference's words; a --sign key's problem is not the image's
        print(f"Error: {label}{shown}", file=sys.stderr)
        return err.status if isinstance(err, ExecError) else EXIT_ERROR
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or Terminated
        return _interrupted(signal_of(interrupt))
    except BrokenPipeError:
        if not stdio.reader_gone():
            raise
        return stdio.closed_status()
    except stdio.StdoutError as err:  # > /dev/full, a full disk: the command's output is lost, say so
        return stdio.failed_status(err, EXIT_ERROR)


def _commands_with(option: str, command: str, prog: str) -> list[str]:
    """The commands other than ``command`` that have ``option`` (``run --output-dir``:
    convert's, batch's...; argparse's own message took its value for the image, and the
    closest option of ``command`` was not the one meant)."""
    if not option.startswith("--") and len(option) > 2:  # the single-dash form of Go's flags
        option = "-" + option
    if not option.startswith("--"):
        return []
    owners = []
    for other, factory in PARSERS.items():
        parser = factory(f"{prog} {other}") if other != command else None
        if parser is not None and option in parser._option_string_actions:
            owners.append(other)
    return owners


def _interrupted(signum: int) -> int:
    """Say on stderr, in one line, that the command was stopped by signal ``signum``
    (its clean-up is done: nothing half-written is left under a final name), and return
    its exit status, ``128 + signum`` (130 for Ctrl-C, 143 for ``SIGTERM``). Another
    Ctrl-C meanwhile, or a stderr that is gone, changes neither (no traceback)."""
    import signal

    try:
        with contextlib.suppress(OSError, ValueError):
            print(f"Interrupted ({signal.Signals(signum).name})", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    return exit_status(signum)


def entry() -> NoReturn:
    """The ``docker2aci`` console script and ``python -m docker2aci``: :func:`main` on
    ``sys.argv``, then exit with its status.

    Before the interpreter's teardown every object is moved out of the cyclic garbage
    collector's reach (:func:`gc.freeze`): its last collections would walk the whole heap
    (the HTTP stack's modules among it) for memory the process is about to give back,
    40-50 ms of every command, a sixth of a warm re-conversion. Exit handlers, the
    flushing of standard streams and module teardown run as usual. Call :func:`main`, not
    this, to run commands inside a longer-lived process.
    """
    stdio.reserve()
    stdio.guard_stdout()
    try:
        status: int | str | None = main()
    except SystemExit as leaving:  # --help: argparse exits with its text still in the buffer
        status = leaving.code
    status = stdio.flushed(status, EXIT_ERROR)
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
