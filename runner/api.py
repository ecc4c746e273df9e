"""``run_aci``: verify an ACI, take its tree from the tree store, and run its app in a pod."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from docker2aci.atomic import default_temp_dir
from docker2aci.errors import ExecError, RunnerError, VerificationError
from runner.dependencies import DirectoryResolver, label_map
from runner.pod import Pod, open_pod
from runner.treestore import ChainImage, DependencyResolver, Tree, TreeStore, build_chain, default_store_dir, render_chain
from runner.volumes import Volume, prepare_volumes, with_mounts
from runner.linux import root_is_mount_point
from runner.paths import owner_in_root, read_text_in_root
from runner.run import run_fly
from runner.spec import build_process_spec

logger = logging.getLogger(__name__)

#: Stage names :func:`run_aci` accepts.
STAGES = ("fly", "isolated")

#: ``--insecure-options`` values accepted (rkt's names). ``image`` skips the signature
#: check (as rkt needs for unsigned ``docker://`` images).
INSECURE_OPTIONS = frozenset({"image"})

#: How an unsigned image becomes runnable, after what would sign it ("sign it with X").
UNSIGNED_HINT = "and trust that key (docker2aci trust add), or skip the check with --insecure-options=image"


_COPY_CHUNK = 1 << 20
"""Bytes per read when copying the ACI before verifying it."""


@dataclass(frozen=True)
class Isolation:
    """Settings of the ``isolated`` stage (ignored by ``fly``).

    Attributes:
        hostname: the app's host name (default: the container's id,
            ``docker2aci-<16 hex digits>``, as Docker's is its container's).
        net: ``none`` (only ``lo``) or ``host``; ``None``: ``none``.
        memory: a memory limit in rkt's units (``128M``, ``1Gi``); overrides the
            manifest's ``resource/memory`` isolator.
        cpu: a CPU limit (``500m`` millicores, or cores); overrides ``resource/cpu``.
    """

    hostname: str | None = None
    net: str | None = None
    memory: str | None = None
    cpu: str | None = None

    def given(self) -> list[str]:
        """The settings given, as their options (``--memory``), in order."""
        return [f"--{name}" for name in ("hostname", "net", "memory", "cpu") if getattr(self, name) is not None]


def choose_stage(stage: str | None) -> str:
    """The stage to run with: ``stage`` when given, else ``isolated`` where an OCI
    runtime is installed and usable, else ``fly`` with a warning (``decisions.md``,
    "Runner").

    Raises:
        RunnerError: an unknown stage.
    """
    if stage is not None:
        if stage not in STAGES:
            raise RunnerError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
        return stage
    from runner.isolated import available_runtime  # the OCI runtime's modules: only for the isolated stage

    if available_runtime() is None:
        logger.warning("no OCI runtime (runc) is installed: running with the fly stage (no isolation)")
        return "fly"
    if not root_is_mount_point():
        logger.warning("/ is not a mount point here (a chroot), where runc cannot run: "
                       "running with the fly stage (no isolation)")
        return "fly"
    return "isolated"


def run_aci(
    aci_path: str | os.PathLike[str],
    args: list[str] | None = None,
    *,
    exec_override: list[str] | None = None,
    stage: str | None = None,
    insecure_options: frozenset[str] = frozenset(),
    work_dir: str | os.PathLike[str] | None = None,
    trust_dir: str | os.PathLike[str] | None = None,
    isolation: Isolation | None = None,
    volumes: Sequence[Volume] = (),
    mounts: Sequence[Mapping[str, str]] = (),
    set_env: Mapping[str, str] | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    image_id: str | None = None,
    overlay: bool = True,
    dependency_dirs: Sequence[str] = (),
    display: str | None = None,
    on_start: Callable[[], None] | None = None,
) -> int:
    """Verify an ACI's signature, take its rendered tree from the tree store (rendering
    it if needed), and run its app on a writable layer of its own; return the app's exit
    status.

    Unless ``insecure_options`` holds ``"image"``, the ACI must carry a detached signature
    ``<aci>.asc`` by a key the trust store trusts for the image's name (a root key, or a
    key for the name or a parent prefix); expired and revoked keys are refused (see
    :mod:`docker2aci.signing`). The ACI (a regular file) is then read once into a
    private, unlinked copy, which is verified, hashed and rendered: the bytes verified
    are the bytes run.

    The tree (:mod:`runner.treestore`) is rendered once per image ID, dependencies first
    (found in ``dependency_dirs``, then the ACI's own directory), and shared by every run
    of the image; the run writes into a pod (:mod:`runner.pod`): an overlay on the tree,
    or a private render where overlayfs is unavailable or ``overlay`` is false.

    Stages: ``fly`` (chroot in a private mount namespace, host pid and network, like rkt
    fly) and ``isolated`` (pid, mount, uts, ipc and network namespaces, cgroup limits,
    Docker's default capabilities, through an OCI runtime: runc; see
    :mod:`runner.isolated` and ``isolation``); default :func:`choose_stage`. An image whose
    ``os`` or ``arch`` label is not the host's is run with a warning, as ``docker run`` does.

    The command line is ``exec_override + args`` with an override; else ``args`` replace
    Docker's Cmd (``appc.io/docker/entrypoint`` annotation + ``args``); else the
    manifest's ``app.exec``. User and group names are resolved in the image's own
    ``/etc/passwd`` and ``/etc/group``. ``set_env`` overrides the image's environment.
    ``volumes`` are mounted on the manifest's mount points of the same name, their
    targets resolved inside the rootfs (:mod:`runner.volumes`). See appc
    ``spec/aci.md`` (Image Archives), ``spec/types.md`` (Image Manifest) and
    ``spec/ace.md`` (Execution Environment).

    Args:
        aci_path: the ACI file (gzip, bzip2, xz or plain tar).
        args: the words after ``--`` on the command line.
        exec_override: the program and arguments to run instead of the exec (``--exec``).
        stage: ``"fly"``, ``"isolated"`` or ``None`` (:func:`choose_stage`).
        insecure_options: security checks to skip (:data:`INSECURE_OPTIONS`).
        work_dir: where the private copy of a signed ACI is made (default: the system's
            temporary directory).
        trust_dir: the trust store (default: ``/etc/docker2aci/trust`` for root, else
            ``~/.config/docker2aci/trust``; :func:`docker2aci.signing.default_trust_dir`).
        isolation: settings of the ``isolated`` stage; the ``fly`` stage ignores them,
            with a warning naming those given.
        volumes: ``--volume`` values (:func:`runner.volumes.parse_volume`).
        mounts: ``--mount`` values (:func:`runner.volumes.parse_mount`): mount points
            added to (or moved in) the image's.
        set_env: environment variables to set or override.
        store_dir: the tree store's root (default :func:`runner.treestore.default_store_dir`).
        image_id: the ACI's image ID when known (a conversion record); checked on render.
        overlay: ``False`` renders a private copy per run instead of an overlay.
        dependency_dirs: directories searched for the ACIs of dependencies.
        display: how errors name the image (default ``aci_path``), e.g. the source it
            was converted from.
        on_start: called once the image is verified and rendered and its pod made, just
            before the stage starts the app: what fails after it is the run's, not the
            image's (the pre-run hook converts a damaged image again only before it).

    Returns:
        The app's exit status (0–255); ``128 + N`` when it was killed by signal ``N``.

    Raises:
        VerificationError: the image is unsigned, badly signed, or signed by a key that is
            untrusted for its name, expired or revoked; the message names the image, the
            signing key ID and the prefix looked up.
        SigningError: the signature or the trust store cannot be read.
        VolumeOptionError: a volume names no mount point of the image, or two volumes
            have the same name (a usage error, and a :class:`RunnerError`).
        RunnerError: unknown stage or insecure option; a str given for ``args``,
            ``exec_override`` or ``insecure_options``, a volume or mount not made by
            :mod:`runner.volumes` (naming the argument); not root; the ACI is unreadable,
            unsafe or has no manifest; a dependency is missing; the image has no exec and
            neither ``args`` nor ``exec_override`` is given; a user or group is unknown in
            the image; or the app cannot be started (the message says why).
        ExecError: the app's program was not found in the image (:attr:`ExecError.status`
            127) or cannot be executed there (126); the message names the image, the
            program and why.
    """
    _check_arguments(args, exec_override, volumes, mounts)
    stage = choose_stage(stage)
    _check_insecure_options(insecure_options)
    isolation = isolation or Isolation()
    # a limit asked for and silently not applied misleads; --net host is what fly does
    ignored = [option for option in isolation.given() if option != "--net" or isolation.net != "host"]
    if stage == "fly" and ignored:
        logger.warning("%s ignored: the fly stage has no isolation (the host's network and host name, "
                       "no limits); use --stage=isolated", ", ".join(ignored))
    runtime = None
    if stage == "isolated":
        from runner.isolated import available_runtime

        runtime = available_runtime()
        if runtime is None:
            raise RunnerError("the isolated stage needs runc (apt-get install runc); or use --stage=fly")
        if not root_is_mount_point():
            raise RunnerError("the isolated stage cannot run here: / is not a mount point (a chroot); "
                              "use --stage=fly")
    if os.geteuid() != 0:  # both stages need root; a user who chose no stage is told of the one used
        raise RunnerError(f"running an image needs root: the {stage} stage " + (
            "mounts in a private mount namespace and chroots" if stage == "fly" else
            "has the OCI runtime create namespaces and cgroups"))
    app = _App(args, exec_override, runtime, isolation, tuple(volumes), tuple(mounts), dict(set_env or {}))
    store = TreeStore(store_dir or default_store_dir())
    resolver = DirectoryResolver([*dependency_dirs, os.path.dirname(os.path.abspath(aci_path))])
    with open_image(aci_path, store, insecure_options=insecure_options, trust_dir=trust_dir,
                    work_dir=work_dir, image_id=image_id, resolver=resolver, display=display) as (tree, chain):
        _warn_foreign_platform(tree.manifest, display or os.fspath(aci_path))
        with open_pod(store.root, tree.rootfs, overlay=overlay,
                      render=functools.partial(render_chain, chain)) as pod:
            if on_start is not None:
                on_start()
            try:
                return _run_in_pod(tree.manifest, pod, app, keep_open=(tree.lock_fd, pod.lock_fd))
            except ExecError as err:  # the stages know the tree, not the image
                raise err.in_image(display or os.fspath(aci_path)) from err
            except OSError as err:  # writing the pod's /etc files, the bundle: a full disk
                raise RunnerError(f"preparing the pod {pod.path}: {err.strerror or err}") from err


@contextlib.contextmanager
def open_image(
    aci_path: str | os.PathLike[str],
    store: TreeStore,
    *,
    insecure_options: frozenset[str] = frozenset(),
    trust_dir: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    image_id: str | None = None,
    resolver: DependencyResolver | None = None,
    display: str | None = None,
) -> Iterator[tuple[Tree, list[ChainImage]]]:
    """Verify an ACI (unless ``insecure_options`` holds ``"image"``) and give its tree
    from the store, rendering it if needed; the tree stays in use until the block ends.

    The signature is checked on a private, unlinked copy, which is then hashed and
    rendered. Dependencies found by ``resolver`` must be signed and trusted too, and are
    read the same way; the tree's key covers every image ID rendered, so a tree made over
    other dependencies is never taken for this one.

    Args:
        aci_path: the ACI file.
        store: the tree store.
        insecure_options: security checks to skip (:data:`INSECURE_OPTIONS`).
        trust_dir: the trust store (default :func:`docker2aci.signing.default_trust_dir`).
        work_dir: where the private copy is made.
        image_id: the ACI's image ID when known; checked on render.
        resolver: finds dependencies.
        display: how errors name the image (default ``aci_path``).

    Yields:
        ``(tree, chain)``: the :class:`runner.treestore.Tree`, and the images it was
        rendered from (:func:`runner.treestore.build_chain`: private copies when they
        were verified, valid inside the block), for a private render of the same bytes.

    Raises:
        VerificationError, SigningError, RunnerError: as :func:`run_aci`.
    """
    _check_insecure_options(insecure_options)
    insecure = "image" in insecure_options
    with contextlib.ExitStack() as stack:
        def pinned(path: str, shown: str | None = None) -> str:
            """A verified private copy (the bytes checked are the bytes rendered)."""
            from docker2aci.signing import signature_path, verify_aci  # OpenPGP: only when checking
            from docker2aci.trust import default_trust_dir

            trust = os.fspath(trust_dir or default_trust_dir())
            copy = stack.enter_context(_private_copy(path, work_dir))
            try:
                verify_aci(copy, trust, signature=signature_path(path), display=shown or path)
            except VerificationError as err:
                if err.reason != "unsigned":
                    raise
                raise VerificationError(err.image, err.key_id, err.prefix, err.reason,
                                        f"{err.detail}: sign it with docker2aci sign {path} --key KEYFILE "
                                        f"{UNSIGNED_HINT}") from None
            return copy

        top = os.fspath(aci_path) if insecure else pinned(os.fspath(aci_path), display)
        chain = build_chain(top, image_id=image_id, resolver=resolver,
                            open_dependency=(lambda path: path) if insecure else pinned, identify=store.identify)
        with store.acquire(top, chain=chain) as tree:
            yield tree, chain


def _check_arguments(args: object, exec_override: object, volumes: Sequence[object],
                     mounts: Sequence[object]) -> None:
    """Refuse a string where :func:`run_aci` takes a list of words (it would run each
    character as a word) and a volume or mount not made by :mod:`runner.volumes`.

    Raises:
        RunnerError: naming the argument.
    """
    for name, words in (("args", args), ("exec_override", exec_override)):
        if words is not None and (isinstance(words, (str, bytes)) or not isinstance(words, Sequence)
                                  or not all(isinstance(word, str) for word in words)):
            raise RunnerError(f"{name}: expected a list of str (one per word), got {words!r}")
    if not all(isinstance(volume, Volume) for volume in volumes):
        raise RunnerError(f"volumes: expected Volume objects (runner.volumes.parse_volume), got {volumes!r}")
    if not all(isinstance(mount, Mapping) for mount in mounts):
        raise RunnerError(f"mounts: expected mappings (runner.volumes.parse_mount), got {mounts!r}")


def _check_insecure_options(options: frozenset[str]) -> None:
    if isinstance(options, str):  # frozenset("image") would name its letters
        raise RunnerError(f"insecure_options: expected a set of option names, got the str {options!r}")
    unknown = set(options) - INSECURE_OPTIONS
    if unknown:
        raise RunnerError(f"unknown insecure option(s) {', '.join(sorted(unknown))}: "
                          f"choose from {', '.join(sorted(INSECURE_OPTIONS))}")


def _warn_foreign_platform(manifest: Mapping[str, Any], shown: str) -> None:
    """Warn, as ``docker run`` does, when an image's ``os`` or ``arch`` label (appc's
    names, ``spec/types.md`` "Labels") is not the host's: its programs start only where
    the kernel runs them natively or an emulator is registered (``binfmt_misc``), and
    otherwise fail with "Exec format error". The run goes on either way."""
    from converters.errors import BadConfig
    from converters.names import appc_os_arch
    from docker2aci.manifest import Platform

    given = label_map(manifest.get("labels"))  # checked already: the image's identity is (open_image)
    host = Platform.host()
    try:
        host_os, host_arch = appc_os_arch(host.os, host.architecture, host.variant)
    except BadConfig:  # a host appc has no name for: nothing to compare with
        return
    image_os, image_arch = given.get("os", host_os), given.get("arch", host_arch)
    if image_os != host_os:
        logger.warning("%s: the image's platform (%s/%s) is not this host's (%s/%s): programs built for %s "
                       "do not run on this kernel", shown, image_os, image_arch, host_os, host_arch, image_os)
    elif image_arch != host_arch:
        logger.warning("%s: the image's platform (%s/%s) is not this host's (%s/%s): its programs fail to "
                       "start (\"Exec format error\") unless the kernel runs them or an emulator is "
                       "registered (binfmt_misc)", shown, image_os, image_arch, host_os, host_arch)


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
        into = os.fspath(work_dir or default_temp_dir())  # named in errors: a full disk is this one
        try:
            copy = tempfile.TemporaryFile(prefix="docker2aci-aci-", dir=into)
        except OSError as err:
            raise RunnerError(f"copying {path} into {into}: {err.strerror or err}") from err
        with copy:
            try:
                shutil.copyfileobj(src, copy, _COPY_CHUNK)
                copy.flush()
            except OSError as err:
                raise RunnerError(f"copying {path} into {into}: {err.strerror or err}") from err
            yield f"/proc/self/fd/{copy.fileno()}"


@dataclass(frozen=True)
class _App:
    """What to run, and how (everything but the image)."""

    args: list[str] | None
    exec_override: list[str] | None
    runtime: str | None
    isolation: Isolation
    volumes: tuple[Volume, ...]
    mounts: tuple[Mapping[str, str], ...]
    set_env: dict[str, str]


def _run_in_pod(manifest: Mapping[str, Any], pod: Pod, app: _App, keep_open: Sequence[int] = ()) -> int:
    """Build the process and the volume binds in the pod's rootfs; start the stage.

    ``keep_open``: lock descriptors (read-only) the stage's processes inherit (runc and
    the isolated app, as its descriptors 3 and 4; or the fly app), so that the pod and
    its tree stay locked while the app runs, even when the runner (and runc) is killed:
    ``gc`` then leaves them alone.
    """
    with _inherited(keep_open):
        return _start(manifest, pod, app, keep_open)


@contextlib.contextmanager
def _inherited(fds: Sequence[int]) -> Iterator[None]:
    for fd in fds:
        os.set_inheritable(fd, True)
    try:
        yield
    finally:
        for fd in fds:
            os.set_inheritable(fd, False)


def _start(manifest: Mapping[str, Any], pod: Pod, app: _App, keep_open: Sequence[int] = ()) -> int:
    rootfs = pod.rootfs
    spec = build_process_spec(
        manifest,
        app.args,
        exec_override=app.exec_override,
        passwd_text=read_text_in_root(rootfs, "/etc/passwd"),
        group_text=read_text_in_root(rootfs, "/etc/group"),
        owner_of=functools.partial(owner_in_root, rootfs),
        set_env=app.set_env,
    )
    app_section = manifest.get("app") or {}
    binds = prepare_volumes(rootfs, with_mounts(app_section.get("mountPoints"), app.mounts), app.volumes,
                            empty_dir=pod.volumes_dir)
    if app.runtime is not None:
        from runner.isolated import run_isolated

        isolation = app.isolation
        if (isolation.net or "none") == "none":
            _warn_ports_not_published(app_section.get("ports"))
        return run_isolated(rootfs, spec, hostname=isolation.hostname, net=isolation.net or "none",
                            memory=isolation.memory, cpu=isolation.cpu,
                            isolators=app_section.get("isolators") or (), runtime=app.runtime, binds=binds,
                            preserve_fds=keep_open)
    _warn_isolators_ignored_by_fly(app_section.get("isolators"))
    return run_fly(rootfs, spec, binds=binds, pass_fds=keep_open)


def _warn_ports_not_published(ports: object) -> None:
    """Name the manifest's ``app.ports`` when the app gets a network namespace of its own
    (the isolated stage's ``--net none``, where only ``lo`` is up): nothing on the host
    reaches them, and the runner has no way to publish a port (``docker run -p``). With
    ``--net host``, as in the fly stage, the app listens on the host's own network, so
    there is nothing to say. Ports are named ``PORT[-LAST]/PROTOCOL`` (``80/tcp``,
    ``8000-8002/tcp``; appc ``spec/aci.md``, "ports"); malformed entries are skipped."""
    if not isinstance(ports, list):
        return
    names = []
    for item in ports:
        if isinstance(item, Mapping) and isinstance(item.get("port"), int) and isinstance(item.get("protocol"), str):
            count = item.get("count")
            last = item["port"] + count - 1 if isinstance(count, int) and count > 1 else None
            names.append(f"{item['port']}{'' if last is None else f'-{last}'}/{item['protocol']}")
    if names:
        logger.warning("port(s) %s not published: the app has a network of its own (only lo); use --net=host",
                       ", ".join(dict.fromkeys(names)))


def _warn_isolators_ignored_by_fly(isolators: object) -> None:
    """Name the manifest's isolators, which the fly stage does not apply (like rkt fly).

    appc ``spec/ace.md`` ("Isolators"): an executor MAY ignore isolators, but MUST make
    the ones ignored known to the user; the isolated stage does (it applies
    ``resource/memory``, ``resource/cpu`` and the ``os/linux/capabilities-*`` and
    ``os/linux/no-new-privileges`` isolators, and warns about the rest).
    """
    if not isinstance(isolators, list):
        return
    names = list(dict.fromkeys(item["name"] for item in isolators
                               if isinstance(item, Mapping) and isinstance(item.get("name"), str)))
    if names:
        logger.warning("isolator(s) %s ignored: the fly stage applies no isolator; use --stage=isolated",
                       ", ".join(names))
