"""The pre-run hook: any image source to a verified tree in the store, converting first
when needed. The one module of the package that drives the runner (besides the CLI): it
joins the pipeline's end (an ACI) to the runner's start.

``docker2aci run SOURCE`` and ``docker2aci fetch SOURCE`` (``docker://REF``,
``docker-archive:PATH``, ``oci:DIR``, an ``.aci`` file ...) go through
:func:`converted`: an ACI file is used as it is; any other source is converted
(:func:`docker2aci.pipeline.convert`) into a private temporary directory, through the
conversion cache, so an image already converted is not converted again. Many callers
racing for the same uncached image convert it once: the conversion cache's lock makes
the first convert and the others reuse its result (the registry blobs are fetched once
too, under the blob cache's locks), and the tree store renders each image ID once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from runner.api import UNSIGNED_HINT, open_image
from runner.dependencies import DirectoryResolver
from runner.locks import try_locked
from runner.treestore import TreeStore, default_store_dir

from .errors import Docker2ACIError, RunnerError, UsageError, VerificationError

if TYPE_CHECKING:
    from .pipeline import ConvertOptions, ProgressHook

log = logging.getLogger(__name__)
T = TypeVar("T")

#: File name ending that marks a path as an ACI (anything else is an image source).
ACI_SUFFIX = ".aci"


@dataclass
class SourceImage:
    """An ACI ready to be verified and rendered.

    Attributes:
        aci: the ACI file (a temporary one for converted sources: valid inside the
            :func:`converted` block).
        image_id: its image ID when known (a conversion), else ``None``.
        converted: whether it was converted from another kind of source.
        app_started: set (by :meth:`mark_app_started`) once an app runs from it: a
            failure after that is never retried on a fresh conversion.
    """

    aci: str
    image_id: str | None
    converted: bool
    app_started: bool = False

    def mark_app_started(self) -> None:
        """The app is about to start (``run_aci``'s ``on_start``)."""
        self.app_started = True


@dataclass(frozen=True)
class FetchedImage:
    """An image in the tree store.

    Attributes:
        image_id: ``sha512-<hex>``.
        path: the tree's directory (``manifest`` and ``rootfs/``).
        name: the image's AC name.
        labels: label name → value.
    """

    image_id: str
    path: str
    name: str
    labels: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``docker2aci fetch``."""
        return dataclasses.asdict(self)


class DamagedInCache(RunnerError):
    """The conversion cache handed out an ACI that changed since it was written; it has
    been marked to be checked (and the image converted again) at its next reuse."""

    reference = "damaged-in-cache"


def is_aci_path(source: str) -> bool:
    """Whether ``source`` names an ACI file (an existing file ending in ``.aci``)."""
    return source.endswith(ACI_SUFFIX) and os.path.isfile(source)


@contextlib.contextmanager
def converted(source: str, options: ConvertOptions | None = None,
              progress: ProgressHook | None = None) -> Iterator[SourceImage]:
    """The ACI of a source: the file itself for an ``.aci`` path, else a conversion into a
    private directory under the cache root, removed when the block ends (or by
    :func:`gc_work_dirs` after a crash); ``options.output_dir`` is ignored, the conversion
    cache is used as ``options`` say.

    Raises:
        UsageError: ``--platform all`` (a run takes one image).
        VerificationError: raised in the block as ``unsigned`` for an image converted
            here without a signing key: raised again saying how to sign it or skip the check.
        DamagedInCache: the block failed on an ACI the conversion cache handed out, and
            that ACI is damaged (the next conversion converts the image again:
            :func:`using_converted` does).
        Docker2ACIError: whatever :func:`docker2aci.pipeline.convert` raises.
    """
    if is_aci_path(source):
        yield SourceImage(source, None, converted=False)
        return
    from .pipeline import ALL_PLATFORMS, ConvertOptions, convert  # the converter: only for other sources

    options = options or ConvertOptions()
    if options.platform == ALL_PLATFORMS:
        raise UsageError("--platform all converts several images; a run takes one")
    with _work_dir(options.cache_dir or default_store_dir()) as work:
        [aci] = convert(source, dataclasses.replace(options, output_dir=work, cache_local=True), progress)
        image = SourceImage(aci.path, aci.image_id, converted=True)
        try:
            yield image
        except Docker2ACIError as err:
            from .store import damaged_in_cache

            # a reused ACI is not hashed when its stamp says it is unchanged: a render or
            # a signature that fails on it may mean it changed without a trace (never a
            # failure once an app ran: it would run again)
            if aci.reused_from is not None and not image.app_started and damaged_in_cache(aci.reused_from):
                raise DamagedInCache(f"{source}: the conversion cache's copy {aci.reused_from} is damaged "
                                     f"(it no longer has the SHA-256 it was written with): {err}") from err
            if not isinstance(err, VerificationError):
                raise
            if err.reason != "unsigned" or options.sign_key or options.gpg_key:
                raise
            # the file it names was this block's own, and is gone: say what would sign it
            raise VerificationError(err.image, err.key_id, err.prefix, err.reason,
                                    "not signed: it was converted without a signing key; convert with --sign "
                                    f"KEYFILE (or --gpg-key ID) {UNSIGNED_HINT}") from None


def using_converted(source: str, options: ConvertOptions | None, progress: ProgressHook | None,
                    use: Callable[[SourceImage], T]) -> T:
    """``use`` the ACI of :func:`converted`; once more, converted again, when it failed on
    a damaged ACI of the conversion cache before any app started from it
    (:class:`DamagedInCache`; ``use`` marks the start: :meth:`SourceImage.mark_app_started`).

    Raises:
        whatever :func:`converted` and ``use`` raise.
    """
    try:
        with converted(source, options, progress) as image:
            return use(image)
    except DamagedInCache as err:
        log.warning("%s; converting again", err)
    with converted(source, options, progress) as image:
        return use(image)


#: Where converted ACIs wait to be verified and rendered, under the cache root.
WORK_DIR = "prerun"


@contextlib.contextmanager
def _work_dir(root: str) -> Iterator[str]:
    """A private directory ``<root>/prerun/run-<random>/`` for as long as the block runs,
    made after its lock file (:func:`docker2aci.atomic.locked_work_dir`), so that
    :func:`gc_work_dirs` tells one a killed run left at any moment; removed afterwards.

    Raises:
        OutputError: ``root`` or ``root/prerun`` could be changed by another user
            (:func:`docker2aci.store.check_trusted_subdirs`).
    """
    from .atomic import locked_work_dir
    from .store import check_trusted_dir, check_trusted_subdirs

    # the tree store checks it only when it shares this root
    check_trusted_dir(root)
    check_trusted_subdirs(root, (WORK_DIR,))
    parent = os.path.join(root, WORK_DIR)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    with locked_work_dir(parent, _PREFIX) as work:
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)


_PREFIX = "run-"


def gc_work_dirs(root: str) -> list[str]:
    """Remove what conversions whose process has ended (killed before it could clean up)
    left under the cache root: their work directories and lock files (those whose lock
    nobody holds), and the cache's partial downloads and copies
    (:func:`docker2aci.store.remove_abandoned_temporaries`).

    Returns:
        The directories and files removed.
    """
    from .atomic import LOCK_SUFFIX, remove_abandoned_work_dirs
    from .store import remove_abandoned_temporaries

    removed = remove_abandoned_temporaries(root)
    parent = os.path.join(root, WORK_DIR)
    removed += remove_abandoned_work_dirs(parent, _PREFIX)
    try:
        names = sorted(os.listdir(parent))
    except FileNotFoundError:
        return removed
    for name in names:  # the directories of an older layout: the lock inside, or none yet
        path = os.path.join(parent, name)
        if name.endswith(LOCK_SUFFIX) or os.path.lexists(path + LOCK_SUFFIX) or not os.path.isdir(path):
            continue
        inner = os.path.join(path, ".lock")
        with try_locked(inner, create=False) as free:
            if free or not os.path.lexists(inner):  # its run has ended
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def fetch(source: str, options: ConvertOptions | None = None, *,
          store_dir: str | os.PathLike[str] | None = None,
          insecure_options: frozenset[str] = frozenset(),
          trust_dir: str | os.PathLike[str] | None = None,
          progress: ProgressHook | None = None) -> FetchedImage:
    """Convert (if the conversion cache lacks it), verify and render an image into the
    tree store; the tree stays there until ``docker2aci gc`` finds it unused.

    Args:
        source: an ``.aci`` file or any source :func:`docker2aci.pipeline.convert` takes.
        options: conversion options (registry credentials, platform, cache, signing).
        store_dir: the tree store's root (default: the cache directory).
        insecure_options: ``{"image"}`` skips the signature check.
        trust_dir: the trust store.
        progress: progress callback of the conversion.

    Returns:
        The :class:`FetchedImage`.

    Raises:
        VerificationError: the image is not signed by a trusted key (and ``image`` is not
            in ``insecure_options``).
        RunnerError: the ACI cannot be rendered.
        Docker2ACIError: the conversion failed.
    """
    store = TreeStore(store_dir or (options.cache_dir if options else None) or default_store_dir())

    def render(image: SourceImage) -> FetchedImage:
        resolver = DirectoryResolver([os.path.dirname(os.path.abspath(image.aci))])
        with open_image(image.aci, store, insecure_options=insecure_options, trust_dir=trust_dir,
                        image_id=image.image_id, resolver=resolver, display=source) as (tree, _):
            labels = {item["name"]: item["value"] for item in tree.manifest.get("labels") or []
                      if isinstance(item, dict) and "name" in item and "value" in item}
            return FetchedImage(tree.image_id, tree.path, str(tree.manifest.get("name", "")), labels)

    return using_converted(source, options, progress, render)
