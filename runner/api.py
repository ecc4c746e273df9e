"""``run_aci``: render an ACI into a fresh temporary tree and run its app."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile

from docker2aci.errors import RunnerError
from runner.extract import render_aci
from runner.paths import owner_in_root, read_text_in_root
from runner.run import check_fly_host, run_fly
from runner.spec import build_process_spec

#: Stage names :func:`run_aci` accepts.
STAGES = ("fly",)

#: ``--insecure-options`` values accepted (rkt's names). ``image`` skips signature
#: checks, which do not exist yet: it is accepted and has no effect.
INSECURE_OPTIONS = frozenset({"image"})


def run_aci(
    aci_path: str | os.PathLike[str],
    args: list[str] | None = None,
    *,
    exec_override: list[str] | None = None,
    stage: str = "fly",
    insecure_options: frozenset[str] = frozenset(),
    work_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Render an ACI's rootfs and run its app; return the app's exit status.

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

    Returns:
        The app's exit status (0–255); ``128 + N`` when it was killed by signal ``N``.

    Raises:
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
        return run_fly(rootfs, spec)
    finally:
        shutil.rmtree(tree)
