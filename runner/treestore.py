"""The tree store: each image rendered once, by image ID, shared by every run of it.

Layout under the store's root (``<cache>/docker2aci`` by default, see
:func:`default_store_dir`)::

    trees/<image ID>/manifest        the image manifest (JSON, as in the ACI)
    trees/<image ID>/rootfs/         the rendered tree: the dependencies, then the image
    trees/<image ID>.lock            flock: shared while a run uses the tree,
                                     exclusive while it is rendered or removed
    trees/.tmp-<image ID>-<random>/  a render in progress (removed on failure, by gc
                                     after a crash)
    trees/index/sha256-<hex>         the image ID of an ACI file with that SHA-256, so a
                                     run of a known file hashes it instead of
                                     decompressing it
    trees/index/stamp-<hex>          the image ID of the file with that stamp and ctime
                                     (SHA-256 of ``dev:inode:size:mtime_ns:ctime_ns``),
                                     so a run of a file seen unchanged reads none of it

A tree is rendered into a ``.tmp-`` directory, checked against its image ID (the
SHA-512 of the uncompressed ACI, appc ``spec/aci.md``), then renamed into place: a
``trees/<image ID>`` directory is always complete and always of that image. Rendering
refuses every entry that would leave the tree, whatever the image's links say
(:mod:`runner.extract`). Runs never write into a tree: each run gets its own writable
layer on top (:mod:`runner.pod`). The store is private (0700): its trees hold files of
every owner, set-user-ID programs among them.

Concurrency: one process renders a given image; the others wait for its lock and use
the result (a caller that found no tree takes the exclusive lock to render only when it is
free at once: waiting for it would wait for the runs of the one that rendered it). A run
holds the shared lock until it ends, so :meth:`TreeStore.gc` (which takes the lock
exclusively without waiting) never removes a tree in use.

Dependencies (appc ``spec/types.md``, ``dependencies`` and ``pathWhitelist``): the
dependencies are rendered first, in order (each with its own dependencies), then the
image on top; each image's ``pathWhitelist`` and the one of the uppermost image above
it that has one say which of its entries are written, as appc's acirenderer (rkt) has it
(:func:`render_chain`). Dependencies are found by a :data:`DependencyResolver`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import random
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from docker2aci.atomic import atomic_file, remove_abandoned_in
from docker2aci.errors import OutputError, RunnerError
from docker2aci.store import check_trusted_dir, check_trusted_subdirs
from docker2aci.filestamp import is_settled, read_memo, stamp, write_memo
from runner.extract import (
    compute_digests,
    compute_image_id,
    file_digest,
    read_manifest,
    render_aci,
    restore_directory_times,
)
from runner.acitool import identity_problems
from runner.dependencies import label_map, satisfies
from runner.fstree import remove_tree
from runner.locks import locked, try_locked
from runner.pod import mounted_on, overlay_lowers

logger = logging.getLogger(__name__)

#: An image ID as a store key (appc ``spec/aci.md``): ``sha512-`` + 128 lowercase hex.
IMAGE_ID = re.compile(r"sha512-[0-9a-f]{128}")

#: How deep dependencies may nest (an image, its dependency, theirs ...). ``--nosquash``
#: chains one ACI per layer, so this must hold the deepest image an engine can run:
#: overlayfs stacks at most 500 layers (``OVL_MAX_STACK``; Docker stops at 125).
MAX_DEPENDENCY_DEPTH = 500

#: The longest a caller that found no tree, and could not render it at once (another
#: caller was looking too), waits before it looks again (seconds; a random part of it).
_LOOK_AGAIN_SECONDS = 0.02

_TMP_PREFIX = ".tmp-"
_INDEX = "index"  # file SHA-256 -> image ID
_TRASH_PREFIX = ".trash-"

DependencyResolver = Callable[[Mapping[str, Any]], str]
"""Finds the ACI file of a dependency (one item of a manifest's ``dependencies``:
``imageName``, optional ``imageID`` and ``labels``); raises :class:`RunnerError` when
there is none."""


def default_store_dir() -> str:
    """``$XDG_CACHE_HOME/docker2aci``, else ``~/.cache/docker2aci`` (the conversion
    cache's root: trees and pods live beside the conversions)."""
    from docker2aci.store import default_cache_dir

    return default_cache_dir()


@dataclass(frozen=True)
class Tree:
    """A rendered image in the store.

    Attributes:
        image_id: the image's ID, ``sha512-<hex>``.
        path: the tree's directory (``manifest`` and ``rootfs/``).
        manifest: the parsed image manifest.
        key: the tree's name in the store (:func:`tree_key`): the image ID, or for an
            image with dependencies a hash of every image ID rendered.
        lock_fd: the descriptor holding the tree's shared lock (valid in the block; a
            stage may hand it to the app's processes so that the tree outlives a killed
            runner for as long as they run).
    """

    image_id: str
    path: str
    manifest: dict[str, Any] = field(repr=False)
    key: str = ""
    lock_fd: int = field(default=-1, repr=False)

    @property
    def rootfs(self) -> str:
        """The rendered root file system (never written to by a run)."""
        return os.path.join(self.path, "rootfs")


@dataclass
class GcReport:
    """What :meth:`TreeStore.gc` did.

    Attributes:
        removed: keys (:func:`tree_key`: the image ID of an image without
            dependencies) of the trees removed.
        in_use: keys of trees kept because a run holds them.
        recent: keys of trees kept because they were used within the grace period.
        partial: paths of what killed processes left: renders (``.tmp-*``), trees half
            removed (``.trash-*``), index entries half written.
    """

    removed: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)


class TreeStore:
    """Rendered trees by image ID (see the module's description).

    Args:
        root: the store's root directory (created 0700 when missing).

    Raises:
        RunnerError: another user could change ``root``, and so the trees rendered in
            it (:func:`docker2aci.store.check_trusted_dir`).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        try:
            check_trusted_dir(self.root, "tree store")
            check_trusted_subdirs(self.root, ("trees", "pods", "prerun"), "tree store")
        except OutputError as err:
            raise RunnerError(str(err)) from err
        self.dir = os.path.join(self.root, "trees")

    @contextlib.contextmanager
    def acquire(
        self,
        aci_path: str | os.PathLike[str],
        *,
        image_id: str | None = None,
        resolver: DependencyResolver | None = None,
        chain: Sequence[ChainImage] | None = None,
    ) -> Iterator[Tree]:
        """Give the rendered tree of an ACI, rendering it first if the store lacks it;
        the tree stays in the store (and in use) until the ``with`` block ends.

        Args:
            aci_path: the ACI file (gzip, bzip2, xz or plain tar). The caller keeps it
                from changing (a private copy when its signature was checked).
            image_id: the ACI's image ID when the caller knows it (a conversion record);
                the render checks it. Default: computed from the file (one extra read).
            resolver: finds the ACIs of dependencies; ``None`` refuses images that have
                any.
            chain: the images to render, dependencies first, as :func:`build_chain`
                gives them (the caller then controls how each file was opened and
                checked); default: built here from ``aci_path`` and ``resolver``.

        Yields:
            The :class:`Tree`.

        Raises:
            RunnerError: the ACI cannot be read, has another image ID than the one
                given, is unsafe, or a dependency cannot be found; the store cannot be
                written.
        """
        if image_id is not None and not IMAGE_ID.fullmatch(image_id):
            raise RunnerError(f"image ID {image_id!r} is not sha512- and 128 hex digits")
        if chain is None:
            chain = build_chain(aci_path, image_id=image_id, resolver=resolver, identify=self.identify)
        key = tree_key(chain)
        self._make_dirs()
        lock = self._lock_path(key)
        path = os.path.join(self.dir, key)
        while True:
            with locked(lock, fcntl.LOCK_SH) as fd:
                if _is_tree(path):
                    os.utime(path)  # last use, for gc's grace period
                    yield Tree(chain[-1].image_id, path, _load_manifest(path), key, fd)
                    return
                # Never waited for: a caller that renders meanwhile then holds the shared
                # lock for as long as its app runs. Refused (another looks too), the shared
                # lock is gone as well (flock(2) converts by unlocking first): look again,
                # waiting for a render under way.
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass
                else:
                    if not _is_tree(path):
                        self._render(chain, key, path)
                    fcntl.flock(fd, fcntl.LOCK_SH)  # gc may take it between: look again
                    if _is_tree(path):
                        yield Tree(chain[-1].image_id, path, _load_manifest(path), key, fd)
                        return
                    continue
            time.sleep(random.uniform(0, _LOOK_AGAIN_SECONDS))  # the others who look: one of them renders

    def identify(self, aci_path: str | os.PathLike[str]) -> str:
        """The image ID of an ACI file, from the store's index of files seen before: by
        the file's stamp (:mod:`docker2aci.filestamp`: no read at all), else by its SHA-256
        (one read of the compressed bytes), else computed (decompressing it) and added
        to the index. A digest entry is only ever written from one read of the file that
        gave both digests; a stamp entry only for a settled file whose stamp did not
        change while it was identified.

        Raises:
            RunnerError: the file cannot be read or decompressed.
        """
        index = os.path.join(self.dir, _INDEX)
        try:
            before: os.stat_result | None = os.stat(aci_path)
        except OSError:
            before = None
        by_stamp = None
        if before is not None and stat.S_ISREG(before.st_mode):
            by_stamp = os.path.join(index, "stamp-" + _stamp_key(before))
            known = read_memo(by_stamp)
            if known is not None and IMAGE_ID.fullmatch(known):
                return known
        image_id = self._identify_by_digest(aci_path, index)
        if by_stamp is not None and before is not None and is_settled(before):
            try:
                if _stamp_key(os.stat(aci_path)) == _stamp_key(before):  # hashed unchanged
                    write_memo(by_stamp, image_id)
            except OSError:
                pass
        return image_id

    def _identify_by_digest(self, aci_path: str | os.PathLike[str], index: str) -> str:
        """The image ID of an ACI file by its SHA-256, from the index or computed."""
        digest = file_digest(aci_path)
        known = read_memo(os.path.join(index, digest.replace(":", "-")))
        if known is not None and IMAGE_ID.fullmatch(known):
            return known
        digest, image_id = compute_digests(aci_path)
        try:
            os.makedirs(index, mode=0o700, exist_ok=True)
            with atomic_file(os.path.join(index, digest.replace(":", "-")), 0o600) as (_, handle):
                handle.write(image_id.encode())
        except OSError as err:
            logger.debug("not indexing %s: %s", aci_path, err)
        return image_id

    def image_ids(self) -> list[str]:
        """The image IDs of the trees in the store, sorted."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if IMAGE_ID.fullmatch(n) and _is_tree(os.path.join(self.dir, n)))

    def gc(self, grace_seconds: float = 0.0) -> GcReport:
        """Remove the trees no run uses, and renders a crash left half-done.

        Args:
            grace_seconds: keep trees used less than this many seconds ago.

        Returns:
            A :class:`GcReport`.

        Raises:
            RunnerError: the store cannot be read.
        """
        report = GcReport()
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return report
        except OSError as err:
            raise RunnerError(f"reading the tree store {self.dir}: {err.strerror}") from err
        now = time.time()
        lowers = overlay_lowers()  # a pod whose app runs on, though nothing holds the tree's lock
        report.partial += remove_abandoned_in(os.path.join(self.dir, _INDEX))  # a killed identify()
        for name in names:
            path = os.path.join(self.dir, name)
            if name.startswith(_TRASH_PREFIX):
                remove_tree(path, make_writable=True, ignore_errors=True)
                report.partial.append(path)
                continue
            image_id = name[len(_TMP_PREFIX):len(_TMP_PREFIX) + 135] if name.startswith(_TMP_PREFIX) else name
            if name.endswith(".lock") and IMAGE_ID.fullmatch(name[:-5]) and name[:-5] not in names:
                self._remove_orphan_lock(name[:-5])  # a render that failed, or a crash
                continue
            if not IMAGE_ID.fullmatch(image_id):
                continue
            with try_locked(self._lock_path(image_id)) as held:
                if not held or (name == image_id and mounted_on(os.path.join(path, "rootfs"), lowers)):
                    if name == image_id:
                        report.in_use.append(image_id)
                    continue
                if name != image_id:  # a render nobody is doing any more
                    remove_tree(path, make_writable=True, ignore_errors=True)
                    report.partial.append(path)
                    continue
                try:
                    used = os.lstat(path).st_mtime
                except FileNotFoundError:
                    continue
                if max(now - used, 0.0) < grace_seconds:  # used "later" (the clock went back): now
                    report.recent.append(image_id)
                    continue
                self._remove(path)
                report.removed.append(image_id)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._lock_path(image_id))
        return report

    def _remove_orphan_lock(self, key: str) -> None:
        with try_locked(self._lock_path(key)) as held:
            if held and not os.path.lexists(os.path.join(self.dir, key)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._lock_path(key))

    def _make_dirs(self) -> None:
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            os.chmod(self.dir, 0o700)
        except OSError as err:
            raise RunnerError(f"creating the tree store {self.dir}: {err.strerror}") from err

    def _lock_path(self, image_id: str) -> str:
        return os.path.join(self.dir, f"{image_id}.lock")

    def _render(self, chain: Sequence[ChainImage], key: str, path: str) -> None:
        """Render into a private directory, check the image IDs, then rename into place."""
        if os.path.lexists(path):  # an incomplete tree (a crash while it was removed)
            self._remove(path)
        tmp = os.path.join(self.dir, f"{_TMP_PREFIX}{key}-{secrets.token_hex(4)}")
        try:
            os.mkdir(tmp, 0o700)
        except OSError as err:
            raise RunnerError(f"rendering {key} into the tree store {self.dir}: {err.strerror or err}") from err
        try:
            rootfs = os.path.join(tmp, "rootfs")
            os.mkdir(rootfs, 0o755)
            started = time.monotonic()
            manifest = render_chain(chain, rootfs)
            with open(os.path.join(tmp, "manifest"), "w", encoding="utf-8") as handle:
                json.dump(manifest, handle)
            os.chmod(tmp, 0o755)
            os.rename(tmp, path)
            logger.debug("rendered %s into the tree store in %.2f s", key, time.monotonic() - started)
        except OSError as err:  # its manifest (a full disk), the rename
            self._remove(tmp)
            raise RunnerError(f"rendering {key} into the tree store {self.dir}: {err.strerror or err}") from err
        except BaseException:
            self._remove(tmp)
            raise

    def _remove(self, path: str) -> None:
        """Rename out of the way first, so a half-removed tree is never taken for one."""
        trash = os.path.join(self.dir, f"{_TRASH_PREFIX}{secrets.token_hex(8)}")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        remove_tree(trash, make_writable=True)


@dataclass(frozen=True)
class ChainImage:
    """One image to render: the image itself or one of its dependencies.

    Attributes:
        path: the file to read (a private copy when it was verified).
        image_id: its image ID; the render checks it.
        manifest: its manifest.
        upper_whitelist: the ``pathWhitelist`` (normalised absolute paths) of the uppermost
            image above it, on its way up the dependencies to the image run, that has one;
            ``None`` when none has (:func:`render_chain`).
    """

    path: str
    image_id: str
    manifest: dict[str, Any] = field(repr=False)
    upper_whitelist: frozenset[str] | None = None


def _stamp_key(st: os.stat_result) -> str:
    """The index key of a file's stamp (:mod:`docker2aci.filestamp`) with its ctime: a
    file the store has never seen (a copy with its mtime kept, on a file system that
    reuses inode numbers) always has another ctime, which no program can set."""
    return hashlib.sha256(f"{stamp(st)}:{st.st_ctime_ns}".encode()).hexdigest()


def build_chain(
    aci_path: str | os.PathLike[str],
    *,
    image_id: str | None = None,
    resolver: DependencyResolver | None = None,
    open_dependency: Callable[[str], str] = lambda path: path,
    identify: Callable[[str], str] = compute_image_id,
) -> list[ChainImage]:
    """The images to render for an ACI, dependencies first (appc ``spec/types.md``,
    ``dependencies``): depth first, in each manifest's order, each image once (a
    dependency two images share is rendered once, where it first appears), the image
    itself last.

    Args:
        aci_path: the image's ACI.
        image_id: its image ID when known (else computed).
        resolver: finds a dependency's ACI; ``None`` refuses an image that has any.
        open_dependency: turns the file the resolver found into the file to read
            (a verified private copy): called once per file.
        identify: gives a file's image ID (:meth:`TreeStore.identify` looks it up).

    Returns:
        The chain; its last item is the image.

    Raises:
        RunnerError: a dependency is missing or has another ``imageID`` than the one
            named, a cycle, nesting deeper than :data:`MAX_DEPENDENCY_DEPTH`, an ACI
            that cannot be read, or a manifest whose ``acVersion``, ``name`` or ``labels``
            break appc's rules (:func:`runner.acitool.identity_problems`).
    """
    order: list[ChainImage] = []
    done: set[str] = set()
    opened: dict[str, tuple[str, str, dict[str, Any]]] = {}  # the resolver's path -> (file read, image ID, manifest)

    def visit(path: str, known_id: str | None, chain: tuple[str, ...], upper: frozenset[str] | None,
              wanted: tuple[str, Mapping[str, Any], str] | None = None) -> tuple[str, dict[str, Any]]:
        """Add the image at ``path`` (and first its dependencies) to ``order``; ``wanted``:
        (the name of the image that depends on it, the dependency, the file the resolver
        found), checked before anything else is read."""
        manifest = read_manifest(path)
        if problems := identity_problems(manifest):
            raise RunnerError(f"{path}: not a valid image manifest: {'; '.join(problems)}")
        if wanted is not None:
            _check_is_dependency(manifest, *wanted)
        name = str(manifest.get("name", "?"))
        own_list = _whitelist(manifest, name)
        if name in chain:
            raise RunnerError(f"dependency cycle: {' -> '.join([*chain, name])}")
        dependencies = manifest.get("dependencies") or []
        if not isinstance(dependencies, list):
            raise RunnerError(f"{name}: manifest field dependencies is not a list")
        if dependencies and len(chain) >= MAX_DEPENDENCY_DEPTH:
            raise RunnerError(f"{name}: dependencies nest deeper than {MAX_DEPENDENCY_DEPTH}")
        for dependency in dependencies:
            if not isinstance(dependency, Mapping) or not isinstance(dependency.get("imageName"), str):
                raise RunnerError(f"{name}: a dependency has no imageName")
            if resolver is None:
                raise RunnerError(f"{name} depends on {dependency['imageName']}: "
                                  "no place to look for dependencies was given")
            found = resolver(dependency)
            if found not in opened:
                copy = open_dependency(found)
                below = upper if upper is not None else own_list  # the uppermost list on the way up counts
                opened[found] = (copy, *visit(copy, None, (*chain, name), below, (name, dependency, found)))
            _, found_id, found_manifest = opened[found]
            _check_is_dependency(found_manifest, name, dependency, found)  # (a file another one named too)
            wanted = dependency.get("imageID")
            if isinstance(wanted, str) and found_id != wanted:
                raise RunnerError(f"{name}: dependency {dependency['imageName']} is {found_id}, "
                                  f"not the {wanted} it names")
        own_id = known_id or identify(path)
        if own_id not in done:
            done.add(own_id)
            order.append(ChainImage(os.fspath(path), own_id, manifest, upper))
        return own_id, manifest

    visit(os.fspath(aci_path), image_id, (), None)
    return order


def _check_is_dependency(manifest: Mapping[str, Any], parent: str, dependency: Mapping[str, Any], found: str) -> None:
    """Refuse the file read for a dependency when it is not the image the dependency names
    (:func:`runner.dependencies.satisfies`): the file read (a private copy) is checked, not
    the one the resolver looked at, which may have been replaced since by another signed
    image.

    Raises:
        RunnerError: naming the dependency, the file, and what the file is.
    """
    if not satisfies(manifest, dependency):
        asked = "".join(f",{k}={v}" for k, v in sorted(label_map(dependency.get("labels")).items()))
        raise RunnerError(f"{parent}: dependency {dependency['imageName']}{asked} found as {found} is not that "
                          f"image: its name is {manifest.get('name')!r}, its labels "
                          f"{label_map(manifest.get('labels'))}")


def _kept(own: frozenset[str] | None, upper: frozenset[str] | None, path: str, is_dir: bool) -> bool:
    """Whether an entry is written (:func:`render_chain`): ``own``, the image's list, holds
    it or it is a directory; ``upper``, the uppermost list above, holds it."""
    return (is_dir or own is None or path in own) and (upper is None or path in upper)


def _whitelist(manifest: Mapping[str, Any], name: str) -> frozenset[str] | None:
    """An image's ``pathWhitelist`` as normalised absolute paths; ``None`` when it has none
    (absent or empty: every path is allowed, ``spec/types.md``).

    Raises:
        RunnerError: the list is not a list of absolute paths.
    """
    whitelist = manifest.get("pathWhitelist")
    if whitelist is None or whitelist == []:
        return None
    if not isinstance(whitelist, list):
        raise RunnerError(f"{name}: pathWhitelist is not a list")
    for item in whitelist:
        if not isinstance(item, str) or not item.startswith("/"):
            raise RunnerError(f"{name}: pathWhitelist entry {item!r} is not an absolute path")
    return frozenset("/" + os.path.normpath(item).lstrip("/") for item in whitelist)  # //f is /f, as Go cleans it


def tree_key(chain: Sequence[ChainImage]) -> str:
    """A tree's name in the store: the image ID of an image without dependencies, else
    ``sha512-`` + the SHA-512 of the chain's image IDs (one per line, in render order):
    the same image over other dependencies is another tree."""
    if len(chain) == 1:
        return chain[0].image_id
    return "sha512-" + hashlib.sha512("\n".join(c.image_id for c in chain).encode()).hexdigest()


def render_chain(chain: Sequence[ChainImage], rootfs: str) -> dict[str, Any]:
    """Render a chain into ``rootfs`` (an empty directory), each image over the previous
    ones (tar semantics), each checked against its image ID.

    ``pathWhitelist`` (``spec/types.md``) as appc's ``pkg/acirenderer`` applies it, which rkt
    renders with: an image's own list keeps of its own entries the directories and the
    files it names; the list of the uppermost image above it that has one
    (:attr:`ChainImage.upper_whitelist`, acirenderer's ``getUpperPWLM``) keeps only the
    entries it names, directories too. What is refused is not written, so what an image
    below holds at that path stays (the first image allowed wins, as in acirenderer), and
    a directory an allowed entry needs is made as rkt makes it; a hard link of an image to
    a file of its own that was refused gets that file's data (``--nosquash`` chains have
    them).

    Returns:
        The last image's manifest.

    Raises:
        RunnerError: an unsafe entry, a file whose image ID changed, an ACI that cannot
            be read, a malformed ``pathWhitelist``.
    """
    manifest: dict[str, Any] = {}
    times: dict[str, int] = {}
    for image in chain:
        own = _whitelist(image.manifest, str(image.manifest.get("name", "?")))
        upper = image.upper_whitelist
        keep = None if own is None and upper is None else functools.partial(_kept, own, upper)
        manifest = render_aci(image.path, rootfs, image_id=image.image_id, directory_times=times, keep=keep)
    if len(chain) > 1:  # later images wrote into the directories of earlier ones
        restore_directory_times(rootfs, times)
    return manifest


def render_tree(aci_path: str | os.PathLike[str], rootfs: str, *, image_id: str | None = None,
                resolver: DependencyResolver | None = None) -> dict[str, Any]:
    """Render an image with its dependencies into ``rootfs`` (:func:`build_chain`, then
    :func:`render_chain`).

    Raises:
        RunnerError: see :func:`build_chain` and :func:`render_chain`.
    """
    return render_chain(build_chain(aci_path, image_id=image_id, resolver=resolver), rootfs)


def _is_tree(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "manifest")) and os.path.isdir(os.path.join(path, "rootfs"))


def _load_manifest(path: str) -> dict[str, Any]:
    try:
        with open(os.path.join(path, "manifest"), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as err:
        raise RunnerError(f"reading {path}/manifest: {err}") from err
    if not isinstance(manifest, dict):
        raise RunnerError(f"{path}/manifest is not an object")
    return manifest


