"""``run_aci``: render an ACI into a fresh temporary tree and run its app."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from docker2aci.errors import RunnerError
from docker2aci.signing import default_trust_dir, signature_path, verify_aci
from runner.extract import render_aci
from runner.isolated import available_runtime, run_isolated
from runner.linux import root_is_mount_point
from runner.paths import owner_in_root, read_text_in_root
from runner.run import check_fly_host, run_fly
from runner.spec import build_process_spec

#: Stage names :func:`run_aci` accepts.
STAGES = ("fly", "isolated")

#: ``--insecure-options`` values accepted (rkt's names). ``image`` skips the signature
#: check (as rkt needs for unsigned ``docker://`` images).
INSECURE_OPTIONS = frozenset({"image"})


_COPY_CHUNK = 1 << 20
"""Bytes per read when copying the ACI before verifying it."""


@dataclass(frozen=True)
class Isolation:
    """Settings of the ``isolated`` stage (ignored by ``fly``).

    Attributes:
        hostname: the app's host name (default: derived from the image name).
        net: ``none`` (only ``lo``) or ``host``.
        memory: a memory limit in rkt's units (``128M``, ``1Gi``); overrides the
            manifest's ``resource/memory`` isolator.
        cpu: a CPU limit (``500m`` millicores, or cores); overrides ``resource/cpu``.
    """

    hostname: str | None = None
    net: str = "none"
    memory: str | None = None
    cpu: str | None = None


def run_aci(
    aci_path: str | os.PathLike[str],
    args: list[str] | None = None,
    *,
    exec_override: list[str] | None = None,
    stage: str = "fly",
    insecure_options: frozenset[str] = frozenset(),
    work_dir: str | os.PathLike[str] | None = None,
    trust_dir: str | os.PathLike[str] | None = None,
    isolation: Isolation | None = None,
) -> int:
    """Verify an ACI's signature, render its rootfs and run its app; return the app's
    exit status.

    Unless ``insecure_options`` holds ``"image"``, the ACI must carry a detached signature
    ``<aci>.asc`` by a key the trust store trusts for the image's name (a root key, or a
    key for the name or a parent prefix); expired and revoked keys are refused (see
    :mod:`docker2aci.signing`). The ACI (a regular file) is read once into a private,
    unlinked copy, which is both verified and rendered (render errors name it as
    ``/proc/self/fd/N``): the bytes verified are the bytes run.

    Stages: ``fly`` (chroot in a private mount namespace, host pid and network, like rkt
    fly) and ``isolated`` (pid, mount, uts, ipc and network namespaces, cgroup limits,
    Docker's default capabilities, through an OCI runtime: runc; see
    :mod:`runner.isolated` and ``isolation``).

    The rootfs is rendered into a fresh temporary directory (under ``work_dir``, else
    the system's temporary directory) that is removed afterwards (the stage's mounts
    live in the child's private mount namespace and vanish with it). The command line is
    ``exec_override + args`` with an override; else ``args`` replace Docker's Cmd
    (``appc.io/docker/entrypoint`` annotation + ``args``); else the manifest's
    ``app.exec``. User and group names are resolved in the image's own ``/etc/passwd``
    and ``/etc/group``. See appc ``spec/aci.md`` (Image Archives), ``spec/types.md``
    (Image Manifest) and ``spec/ace.md`` (Execution Environment).

    Args:
        aci_path: the ACI file (gzip, bzip2, xz or plain tar).
        args: the words after ``--`` on the command line.
        exec_override: the program and arguments to run instead of the exec (``--exec``).
        stage: the stage1 flavour; only ``"fly"`` exists (chroot in a private mount
            namespace, host pid and network, needs root).
        insecure_options: security checks to skip (:data:`INSECURE_OPTIONS`).
        work_dir: where to create the temporary tree.
        trust_dir: the trust store (default: ``/etc/docker2aci/trust`` for root, else
            ``~/.config/docker2aci/trust``; :func:`docker2aci.signing.default_trust_dir`).

    Returns:
        The app's exit status (0–255); ``128 + N`` when it was killed by signal ``N``.

    Raises:
        VerificationError: the image is unsigned, badly signed, or signed by a key that is
            untrusted for its name, expired or revoked; the message names the image, the
            signing key ID and the prefix looked up.
        SigningError: the signature or the trust store cannot be read.
        RunnerError: unknown stage or insecure option; not root; the ACI is unreadable,
            unsafe or has no manifest; the image has no exec and neither ``args`` nor
            ``exec_override`` is given; a user or group is unknown in the image; or the
            app cannot be started (the message says why).
    """
    if stage not in STAGES:
        raise RunnerError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    unknown = set(insecure_options) - INSECURE_OPTIONS
    if unknown:
        raise RunnerError(
            f"unknown insecure option(s) {', '.join(sorted(unknown))}: "
            f"choose from {', '.join(sorted(INSECURE_OPTIONS))}"
        )
    isolation = isolation or Isolation()
    runtime = None
    if stage == "isolated":
        runtime = available_runtime()
        if runtime is None:
            raise RunnerError("the isolated stage needs runc (apt-get install runc); or use --stage=fly")
        if not root_is_mount_point():
            raise RunnerError("the isolated stage cannot run here: / is not a mount point (a chroot); "
                              "use --stage=fly")
    if "image" in insecure_options:
        return _render_and_run(aci_path, args, exec_override, work_dir, runtime, isolation)
    with _private_copy(aci_path, work_dir) as pinned:
        verify_aci(pinned, os.fspath(trust_dir or default_trust_dir()),
                   signature=signature_path(os.fspath(aci_path)), display=os.fspath(aci_path))
        return _render_and_run(pinned, args, exec_override, work_dir, runtime, isolation)


@contextlib.contextmanager
def _private_copy(aci_path: str | os.PathLike[str], work_dir: str | os.PathLike[str] | None) -> Iterator[str]:
    """``/proc/self/fd/N`` of a private, unlinked copy of the ACI, so the bytes that are
    verified are the bytes that are rendered: the original is read once, and must be a
    regular file (a FIFO, a file someone else writes to, or a FUSE mount could otherwise
    serve different bytes to each read).

    Raises:
        RunnerError: the ACI cannot be read or is not a regular file.
    """
    path = os.fspath(aci_path)
    try:
        src = open(path, "rb")
    except OSError as err:
        raise RunnerError(f"opening {path}: {err.strerror or err}") from err
    with src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise RunnerError(f"{path}: not a regular file")
        try:
            copy = tempfile.TemporaryFile(prefix="docker2aci-aci-", dir=work_dir)
        except OSError as err:
            raise RunnerError(f"copying {path}: {err.strerror or err}") from err
        with copy:
            try:
                shutil.copyfileobj(src, copy, _COPY_CHUNK)
                copy.flush()
            except OSError as err:
                raise RunnerError(f"copying {path}: {err.strerror or err}") from err
            yield f"/proc/self/fd/{copy.fileno()}"


def _render_and_run(aci_path: str | os.PathLike[str], args: list[str] | None, exec_override: list[str] | None,
                    work_dir: str | os.PathLike[str] | None, runtime: str | None, isolation: Isolation) -> int:
    """Render into a fresh tree and run the app in ``fly``, or through ``runtime``."""
    check_fly_host()
    tree = tempfile.mkdtemp(prefix="docker2aci-run-", dir=work_dir)
    try:
        rootfs = os.path.join(tree, "rootfs")
        os.mkdir(rootfs, 0o755)
        manifest = render_aci(aci_path, rootfs)
        spec = build_process_spec(
            manifest,
            args,
            exec_override=exec_override,
            passwd_text=read_text_in_root(rootfs, "/etc/passwd"),
            group_text=read_text_in_root(rootfs, "/etc/group"),
            owner_of=functools.partial(owner_in_root, rootfs),
        )
        if runtime is not None:
            return run_isolated(rootfs, spec, hostname=isolation.hostname, net=isolation.net,
                                memory=isolation.memory, cpu=isolation.cpu,
                                isolators=(manifest.get("app") or {}).get("isolators") or (), runtime=runtime)
        return run_fly(rootfs, spec)
    finally:
        shutil.rmtree(tree)
