"""The local store: a content-addressed blob cache shared by all images, and a conversion
cache keyed by manifest digest, options and our version.

Layout under the cache root (``~/.cache/docker2aci`` or ``--cache-dir``)::

    blobs/<algorithm>/<hex>        verified blobs (layers, configs, manifests)
    conversions/<key>.aci          converted ACIs
    conversions/<key>.json         what convert() returned for them
    conversions/<key>.stamp        the ACI's stamp when last found intact (a memo,
                                   :mod:`docker2aci.filestamp`)
    tmp/blob-*                     partial downloads; never read as blobs (those whose
                                   writer is gone are removed by the next download into
                                   the cache, and by ``docker2aci gc``)
    locks/<algorithm>-<hex>        one lock file per blob being fetched
    locks/conversion-<key>         one lock file per conversion being made
    plain-http/<host>              registries that answered only over plain http
                                   (``--insecure-allow-http``; :mod:`docker2aci.registry.schemes`)

Nothing becomes visible before it is complete and verified: a blob is written to
``tmp/``, checked against its digest, and renamed into ``blobs/``. Concurrent processes
fetching the same blob wait on its lock, so each blob is fetched once. Pulled content may
be private: the cache is created mode 0700 and its files 0600.

Every use of a blob or a conversion sets its mtime (a conversion's: its record's), which
``docker2aci gc`` reads to remove those unused for longer than a grace period
(:func:`gc_cache`), each under its lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import importlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from .atomic import (TEMP_PREFIX, TEMP_SUFFIX, atomic_file, locked_temp, open_locked, remove_abandoned_in,
                     remove_quietly)
from .digest import Digest
from .errors import DigestMismatch, InvalidManifest, OutputError
from .filestamp import is_settled, read_memo, stamp, write_memo

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20
"""Bytes per read when verifying or copying cached files."""
BLOB_TEMP_PREFIX = "blob-"
"""How the partial downloads under ``tmp/`` are named."""
MAX_RECORD_BYTES = 1 << 20
"""The largest conversion record read (bytes): ours are a few KB (the manifest and labels)."""
_RECORD_KEYS = frozenset({"image_id", "name", "labels", "manifest", "manifest_digest", "aci_sha256"})


def _private_dirs(path: str) -> None:
    """Create ``path`` and its missing parents mode 0700."""
    os.makedirs(path, mode=0o700, exist_ok=True)


def check_trusted_dir(path: str, what: str = "cache directory") -> None:
    """Refuse a directory another user could change, for a cache or a store whose content
    is trusted once there (converted ACIs, verified blobs, rendered trees): the directory
    (when it exists) and every directory above it must be owned by this user or root, and
    none may be writable by every user, but for an ancestor with the sticky bit (``/tmp``).
    OpenSSH's ``StrictModes`` checks the same way. Group-writable directories are left
    alone (Debian gives every user a group of their own).

    A missing directory whose nearest existing ancestor is such a sticky directory is
    created here (mode 0700) and then checked, so that no other user can make it first
    between this check and its first use.

    Args:
        path: the directory, created later if missing (its nearest existing ancestors
            are checked then).
        what: names it in the error.

    Raises:
        OutputError: naming the directory, its owner or its mode, or why it could not be
            created.
    """
    start = current = os.path.realpath(path)
    nearest = True  # no existing directory met yet, walking up from ``path``
    while True:
        try:
            info = os.stat(current)
        except FileNotFoundError:
            info = None
        except OSError as err:
            raise OutputError(f"{what} {path}: cannot examine {current}: {err.strerror}") from err
        if info is not None:
            _check_owner_and_mode(what, path, current, info, sticky_ok=current != start)
            if info.st_mode & 0o002 and nearest and current != start:
                try:
                    _private_dirs(start)
                except OSError as err:
                    raise OutputError(f"{what} {path}: cannot create it: {err.strerror or err}") from err
                return check_trusted_dir(path, what)  # whoever made it, it must pass as an existing one
            nearest = False
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


def check_trusted_subdirs(root: str, names: tuple[str, ...], what: str = "cache directory") -> None:
    """Hold the existing subdirectories ``names`` of ``root`` to :func:`check_trusted_dir`'s
    rules: a ``conversions/`` or ``blobs/sha256/`` another user could write to lets that
    user plant entries this user then trusts, whatever the root's own mode. A subdirectory
    that is a symbolic link is checked where it leads.

    Raises:
        OutputError: naming the subdirectory, its owner or its mode.
    """
    for name in names:
        path = os.path.join(root, name)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise OutputError(f"{what} {root}: cannot examine {path}: {err.strerror}") from err
        if stat.S_ISLNK(info.st_mode):
            check_trusted_dir(path, what)
        else:
            _check_owner_and_mode(what, root, path, info)


def _check_owner_and_mode(what: str, named: str, path: str, info: os.stat_result, *, sticky_ok: bool = False) -> None:
    """Refuse ``path`` (``info``: its status) when a user other than this one or root owns
    it, or when every user may write to it (unless it is sticky and ``sticky_ok``).

    Raises:
        OutputError: naming ``what`` ``named`` (the directory the user gave), then ``path``.
    """
    euid = os.geteuid()
    if info.st_uid not in (euid, 0):
        raise OutputError(f"{what} {named}: {path} is owned by uid {info.st_uid}, not by this user "
                          f"(uid {euid}) or root: another user could change what it holds; use a directory "
                          "of your own")
    if info.st_mode & 0o002 and not (sticky_ok and info.st_mode & stat.S_ISVTX):
        raise OutputError(f"{what} {named}: {path} is writable by every user (mode "
                          f"{stat.S_IMODE(info.st_mode):04o}): another user could change what it holds; "
                          "use a directory of your own")


#: The subdirectories of a cache root whose content is trusted once there.
CACHE_SUBDIRS = ("blobs", "blobs/sha256", "blobs/sha384", "blobs/sha512", "conversions", "locks", "tags", "tmp")


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/docker2aci``, else ``~/.cache/docker2aci``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "docker2aci")


class BlobCache:
    """Verified blobs by digest.

    Args:
        root: the cache root directory (created on first write). The first write also
            removes the partial downloads of killed processes from its ``tmp/``
            (:func:`remove_abandoned_temporaries`' blobs).

    Raises:
        OutputError: another user could change ``root`` (:func:`check_trusted_dir`).
    """

    def __init__(self, root: str) -> None:
        check_trusted_dir(root)
        check_trusted_subdirs(root, CACHE_SUBDIRS)
        self.root = root
        self._swept = False

    def path(self, digest: Digest) -> str:
        """Where a blob lives (whether or not it is there yet); ``digest`` is a validated
        :class:`Digest`, so this stays inside the cache."""
        return os.path.join(self.root, "blobs", digest.algorithm, digest.hex)

    def has(self, digest: Digest) -> bool:
        """Whether the blob is in the cache."""
        return os.path.isfile(self.path(digest))

    def evict(self, digest: Digest) -> None:
        """Drop a cached blob (one that failed verification when read)."""
        remove_quietly(self.path(digest))

    def read(self, digest: Digest, limit: int, fetch: Callable[[BinaryIO], None] | None = None) -> bytes | None:
        """A small cached blob (a manifest or config) after checking its digest, or ``None``
        when it is absent or does not match (a damaged entry is removed).

        Args:
            fetch: when given, a blob the cache lacks is fetched first (:meth:`open`).

        Raises:
            OSError: the cache cannot be read (other than the file being absent).
            (with ``fetch``: what :meth:`open` raises)
        """
        f = self.open_cached(digest) if fetch is None else self.open(digest, fetch)
        if f is None:
            return None
        with f:
            data = f.read(limit + 1)
        if len(data) > limit or Digest.of_bytes(data, digest.algorithm) != digest:
            remove_quietly(self.path(digest))
            return None
        return data

    def open_cached(self, digest: Digest) -> BinaryIO | None:
        """The cached blob, open for reading and marked used (its mtime, which
        :func:`gc_cache` reads), or ``None`` when it is not cached: also when no regular
        file is there (a directory, a FIFO, a symbolic link), which a fetch then replaces
        (or, a directory, fails to). Once open, it stays readable whatever removes it
        from the cache.

        Raises:
            OSError: the cache cannot be read (other than the blob being absent).
        """
        f = _open_regular(self.path(digest))
        if f is not None:
            _mark_used(f.fileno())
        return f

    def put(self, digest: Digest, data: bytes) -> None:
        """Store a small blob already in memory.

        Raises:
            DigestMismatch: ``data`` does not hash to ``digest``.
        """
        actual = Digest.of_bytes(data, digest.algorithm)
        if actual != digest:
            raise DigestMismatch(f"blob {digest}", str(digest), str(actual))
        if self.has(digest):
            _mark_used(self.path(digest))
            return
        with self._temp() as (tmp, f):
            _CacheWriter(f, self.root).write(data)
            self._sync(f)
            self._publish(tmp, digest)

    def open(self, digest: Digest, fetch: Callable[[BinaryIO], None]) -> BinaryIO:
        """The blob, open for reading and marked used, fetched first when it is not cached.

        ``fetch`` writes the blob into the file it is given and verifies it while writing
        (a ``RegistryClient.fetch_blob``, which raises ``DigestMismatch`` for other
        bytes); only then does the file become visible. Concurrent callers (threads or
        processes) for the same digest wait for one fetch. A blob already in the cache is
        opened without hashing it: readers verify what they read (layers through
        ``VerifyingReader``, small blobs through :meth:`read`). A fetched blob is opened
        under its lock, which :func:`gc_cache` takes to remove it: what this returns is
        never a blob gone meanwhile.

        Raises:
            OutputError: the cache cannot be written.
            (and whatever ``fetch`` raises, ``DigestMismatch`` among them; nothing is
            left behind then)
        """
        cached = self.open_cached(digest)
        if cached is not None:
            return cached
        with self._lock(digest):
            cached = self.open_cached(digest)
            if cached is not None:
                return cached
            with self._temp() as (tmp, f):
                # verifies as it writes: no second hashing
                fetch(_CacheWriter(f, self.root))  # type: ignore[arg-type]
                self._sync(f)
                self._publish(tmp, digest)
            return open(self.path(digest), "rb")

    def remember_tag(self, reference: str, digest: Digest, media_type: str, *, insecure: bool = False) -> None:
        """Record what the tag ``reference`` (``HOST/REPOSITORY:TAG``) named when the
        registry was last asked: the manifest ``digest`` (a blob of this cache) and its
        media type, which :meth:`recall_tag` gives back (``--pull-policy new`` and
        ``never`` resolve the tag so, without asking the registry); ``insecure``: it was
        asked by a client allowed plain http or unchecked TLS. Not synced: a record lost
        in a crash only means the registry is asked. A failure is logged, not raised (the
        conversion does not need the record)."""
        data = json.dumps({"reference": reference, "digest": str(digest), "media_type": media_type,
                           "insecure": insecure}, separators=(",", ":")).encode()
        path = self._tag_path(reference)
        try:
            _private_dirs(os.path.dirname(path))
            with atomic_file(path, 0o600, sync=False) as (_, f):
                f.write(data)
        except OSError as err:
            log.warning("%s: not recorded: %s", reference, _cache_error(self.root, err, path))

    def recall_tag(self, reference: str, *, insecure_ok: bool = False) -> tuple[Digest, str] | None:
        """The manifest digest and media type :meth:`remember_tag` recorded for
        ``reference``, or ``None`` when there is no record (or a malformed one), or when
        it was made insecurely (plain http, unchecked TLS: whoever was on the way could
        have named any manifest) and ``insecure_ok`` is false."""
        record = _tag_record(self._tag_path(reference))
        if record is None or record.get("reference") != reference:
            return None
        if record.get("insecure") is not False and not insecure_ok:  # a record without the field: insecure
            return None
        return record["digest"], str(record.get("media_type", ""))

    def _tag_path(self, reference: str) -> str:
        return os.path.join(self.root, "tags", hashlib.sha256(reference.encode()).hexdigest())

    def _sync(self, f: IO[bytes]) -> None:
        try:
            f.flush()
            os.fsync(f.fileno())
        except OSError as err:
            raise _cache_error(self.root, err) from err

    @contextlib.contextmanager
    def _temp(self) -> Iterator[tuple[str, IO[bytes]]]:
        tmpdir = os.path.join(self.root, "tmp")
        try:
            _private_dirs(tmpdir)
            if not self._swept:  # once: another thread sweeping too only finds less
                self._swept = True
                for path in _remove_abandoned_blobs(self.root):
                    log.info("removed %s, a partial download left by a process that was killed", path)
            fd, tmp = locked_temp(tmpdir, BLOB_TEMP_PREFIX)  # locked while written: see remove_abandoned_temporaries
        except OSError as err:
            raise _cache_error(self.root, err) from err
        try:
            with os.fdopen(fd, "w+b") as f:
                yield tmp, f
        finally:
            remove_quietly(tmp)

    def _publish(self, tmp: str, digest: Digest) -> None:
        path = self.path(digest)
        try:
            _private_dirs(os.path.dirname(path))
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except OSError as err:
            raise _cache_error(self.root, err, path) from err

    def _lock(self, digest: Digest) -> contextlib.AbstractContextManager[bool]:
        return cache_lock(self.root, _blob_lock(digest))


def remove_abandoned_temporaries(root: str) -> list[str]:
    """Remove the partial files that killed processes left in the cache ``root``: blob
    downloads under ``tmp/``, conversion copies (``conversions/.docker2aci-*.tmp``) and tag
    records (``tags/.docker2aci-*.tmp``) whose writer is gone (their writers hold a lock
    on them while they write).

    Returns:
        The files removed.
    """
    return (_remove_abandoned_blobs(root) + remove_abandoned_in(os.path.join(root, "conversions"))
            + remove_abandoned_in(os.path.join(root, "tags")))


def _remove_abandoned_blobs(root: str) -> list[str]:
    """Remove the partial downloads under ``tmp/`` of the cache ``root`` whose writer is
    gone (a writer holds its file's lock until it has renamed or removed it); returns them."""
    return remove_abandoned_in(os.path.join(root, "tmp"), BLOB_TEMP_PREFIX, "")


def _tag_record(path: str) -> dict[str, Any] | None:
    """A tag record (:meth:`BlobCache.remember_tag`) with its ``digest`` parsed and the
    file's identity (device, inode) as ``_file``, or ``None`` when there is none or it is
    malformed (read as untrusted)."""
    try:
        f = _open_regular(path)
        if f is None:
            return None
        with f:
            info = os.fstat(f.fileno())
            record = json.loads(f.read(MAX_RECORD_BYTES + 1))
        if not isinstance(record, dict):
            return None
        return {**record, "digest": Digest.parse(record["digest"]), "_file": (info.st_dev, info.st_ino)}
    except (OSError, ValueError, KeyError, TypeError, RecursionError, InvalidManifest):
        return None


def _open_regular(path: str) -> BinaryIO | None:
    """``path`` open for reading when it is a regular file, else ``None`` (missing, or a
    directory, a FIFO, a symbolic link: never followed, and a FIFO never blocks).

    Raises:
        OSError: ``path`` cannot be opened for another reason (permissions).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def _mark_used(target: str | int) -> None:
    """Set the mtime of a cache entry (a path or an open descriptor) to now: its last use,
    as :func:`gc_cache` reads it. Best effort: an entry that cannot be touched (a cache on
    a read-only file system) keeps its time."""
    with contextlib.suppress(OSError):
        os.utime(target)


def _cache_error(root: str, err: OSError, path: str | None = None) -> OutputError:
    """The error of a failed write to the cache ``root`` (naming ``path``, the file at fault, when given)."""
    return OutputError(f"writing to the cache {root}: {path + ': ' if path else ''}{err.strerror or err}")


class _CacheWriter:
    """The file a blob is fetched into, as ``fetch`` sees it: what fails writing it (a
    full disk) is an ``OutputError`` naming the cache, not a bare ``OSError``."""

    def __init__(self, f: IO[bytes], root: str) -> None:
        self._f = f
        self._root = root

    def write(self, data: bytes) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            raise _cache_error(self._root, err) from err

    def read(self, size: int = -1) -> bytes:
        """Read back what was written (a download restarted from 0 hashes what it had
        handed to a reader: :mod:`docker2aci.streamedblob`)."""
        try:
            return self._f.read(size)
        except OSError as err:
            raise _cache_error(self._root, err) from err

    def truncate(self, size: int | None = None) -> int:
        try:
            return self._f.truncate(size)
        except OSError as err:
            raise _cache_error(self._root, err) from err

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True


@contextlib.contextmanager
def cache_lock(root: str, name: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold the exclusive lock ``<root>/locks/<name>`` (``flock``), taken again when
    ``docker2aci gc`` removed the file meanwhile (:func:`docker2aci.atomic.open_locked`).

    Args:
        wait: wait for the lock; else give it up at once when another holds it, or when
            what is at its place cannot be opened (a directory, another user's file,
            a link), with a warning naming it: ``docker2aci gc`` then keeps that entry
            and goes on, as the tree store's gc does.

    Yields:
        Whether the lock is held (always, when waiting).

    Raises:
        OutputError: the lock file cannot be created (when waiting: cannot be opened),
            naming it.
    """
    locks = os.path.join(root, "locks")
    path = os.path.join(locks, name)
    try:
        _private_dirs(locks)
        fd = open_locked(path, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB, writable=True)  # NFS
    except BlockingIOError:
        fd = None
    except OSError as err:
        if not wait and os.path.lexists(path):
            log.warning("%s: cannot take this lock (%s): what it guards is kept", path,
                        "a symbolic link" if err.errno == errno.ELOOP else err.strerror or err)
            fd = None
        elif err.errno == errno.ELOOP:
            raise OutputError(f"lock file {path} is a symbolic link, not a file of the cache: "
                              "remove it") from err
        else:
            raise _cache_error(root, err, path) from err
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CachedConversion:
    """A conversion found in the cache.

    Attributes:
        aci: path of the cached ACI file.
        record: what convert() returned for it (JSON-ready: image_id, name, labels,
            manifest, manifest_digest, warnings) and ``aci_sha256``, the ACI file's hash.
    """

    aci: str
    record: dict[str, Any]


class ConversionCache:
    """Converted ACIs by key (see :func:`conversion_key`).

    Args:
        root: the cache root directory.

    Raises:
        OutputError: another user could change ``root`` (:func:`check_trusted_dir`).
    """

    def __init__(self, root: str) -> None:
        check_trusted_dir(root)
        check_trusted_subdirs(root, CACHE_SUBDIRS)
        self.root = root
        self.dir = os.path.join(root, "conversions")

    def lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        """Hold the lock of one conversion, so that processes racing to convert the same
        image convert it once: the first converts and puts, the others then get."""
        return cache_lock(self.root, _conversion_lock(key))

    def get(self, key: str) -> CachedConversion | None:
        """The cached conversion for ``key``, or ``None`` when there is none or its record
        is malformed; one found is marked used (its record's mtime, which :func:`gc_cache`
        reads). Call it under the conversion's lock (:meth:`lock`). The ACI is verified
        against the record when it is copied out (:func:`publish_copy`)."""
        aci = os.path.join(self.dir, f"{key}.aci")
        path = os.path.join(self.dir, f"{key}.json")
        try:  # a record that is no regular file (a FIFO would block) or too large is none
            f = _open_regular(path)
            if f is None:
                return None
            with f:
                data = f.read(MAX_RECORD_BYTES + 1)
            if len(data) > MAX_RECORD_BYTES:
                return None
            record = json.loads(data)
            aci_is_file = stat.S_ISREG(os.lstat(aci).st_mode)  # a link would hand out (and chmod) another file
        except (OSError, ValueError, RecursionError):
            return None
        if not aci_is_file:
            log.warning("%s: not a regular file (a link?): not used; converting again", aci)
            return None
        if not isinstance(record, dict) or not _RECORD_KEYS <= set(record):
            return None
        if "key" not in record:  # written before records named their key: converted again, once
            return None
        if record["key"] != key:  # another conversion's record (and ACI) moved here
            log.warning("%s: not the record of this conversion (it names another); converting again", path)
            return None
        _mark_used(path)
        return CachedConversion(aci, record)

    def put(self, key: str, aci_path: str, record: dict[str, Any], aci_sha256: str | None = None) -> None:
        """Keep a converted ACI and its record, adding the ACI's sha256 (the ACI first, the
        record last, so a record is only ever visible with its ACI). The ACI is kept as a
        hard link to the file written (it was synced when written; no copy), or as a copy
        on another file system: as with :func:`publish_copy`, a later change to the output
        in place is found by the next check. ``aci_sha256`` (hex), when the writer hashed
        the file as it wrote it, spares reading a linked file again. Failures are not fatal
        to the conversion that produced them and are raised as ``OutputError``."""
        try:
            _private_dirs(self.dir)
            cached = os.path.join(self.dir, f"{key}.aci")
            if _link_into_place(aci_path, cached):
                digest = aci_sha256 or Digest.of_file(cached).hex
            else:
                digest = _atomic_copy(aci_path, cached, mode=0o600)
            with atomic_file(os.path.join(self.dir, f"{key}.json"), 0o600) as (_, f):
                f.write(json.dumps({**record, "key": key, "aci_sha256": digest}).encode())
        except OSError as err:
            raise OutputError(f"writing to the cache {self.dir}: {err}") from err


@functools.cache
def code_fingerprint() -> str:
    """The SHA-256 (hex) of the converter's own code: the source files of the
    ``docker2aci`` and ``converters`` packages as installed (``*.py``, ``*.c``), by path
    and content. Part of every conversion key: an upgrade, or a fix installed without a
    new version number, never reuses a conversion an older converter made. Read once per
    process (some 70 files, a few milliseconds).

    Raises:
        OSError: a source file cannot be read.
    """
    digest = hashlib.sha256()
    for package in ("docker2aci", "converters"):
        init = importlib.import_module(package).__file__
        if not init:  # not loaded from files (a frozen application): the version alone tells
            continue
        top = os.path.dirname(os.path.abspath(init))
        sources = []
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            sources.extend(os.path.join(folder, name) for name in files if name.endswith((".py", ".c")))
        for path in sorted(sources):
            with open(path, "rb") as f:
                content = f.read()
            digest.update(b"%s\0%s\0%d\0" % (package.encode(), os.path.relpath(path, top).encode(), len(content)))
            digest.update(content)
    return digest.hexdigest()


def conversion_key(*, version: str, manifest: str, index: str | None, original: str | None, platform: str,
                   compression: str, file: str, name: str | None = None, ac_name: str | None = None) -> str:
    """The conversion cache key (hex SHA-256): everything a converted ACI depends on.

    Args:
        version: our version (a new converter never reuses an old conversion; the key
            also holds :func:`code_fingerprint`, so a converter changed without a new
            version number does not either).
        manifest: the image manifest digest; index: the index it was chosen from.
        original: the reference as typed (it is written into the manifest).
        platform: the image's platform; compression: ``gzip`` or ``none``.
        file: the ACI's file name.
        name: for local sources, how the source names the image (repository, tag ...),
            which it may take from a file name rather than from its content.
        ac_name: the AC name given instead of the source's (batch items, the mirror).
    """
    parts = {"version": version, "code": code_fingerprint(), "manifest": manifest, "index": index,
             "original": original, "platform": platform, "compression": compression, "file": file}
    if name is not None:
        parts["name"] = name
    if ac_name is not None:
        parts["ac_name"] = ac_name
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _atomic_copy(src: str, dest: str, *, mode: int, expected_sha256: str | None = None) -> str:
    """Copy ``src`` to ``dest`` through a temporary file in ``dest``'s directory.

    Returns:
        the hex sha256 of what was copied.

    Raises:
        DigestMismatch: ``expected_sha256`` was given and the content differs.
    """
    h = hashlib.sha256()
    with atomic_file(dest, mode) as (_, out), open(src, "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            h.update(chunk)
            out.write(chunk)
        if expected_sha256 is not None and h.hexdigest() != expected_sha256:
            raise DigestMismatch(f"cached ACI {src}", f"sha256:{expected_sha256}", f"sha256:{h.hexdigest()}")
    return h.hexdigest()


def publish_copy(cached: CachedConversion, dest: str) -> None:
    """Put a cached ACI at ``dest`` atomically (mode 0644, replacing any file there), after
    checking it against its record: as a hard link to the cached file when both are on
    one file system (no copy: a warm re-conversion of a large image takes milliseconds),
    else as a copy. A later change to the output in place would change the cached file
    too; the check here then finds it damaged, and the image is converted again.

    The check hashes the cached file, unless its stamp (:mod:`docker2aci.filestamp`) is the
    one ``conversions/<key>.stamp`` recorded after the last check: then nothing has
    written to it since. Call it under the conversion's lock (:meth:`ConversionCache.lock`).

    Raises:
        DigestMismatch: the cached ACI is not the one recorded.
        OutputError: it cannot be written.
    """
    expected = cached.record["aci_sha256"]
    memo = _stamp_memo(cached.aci)
    try:
        before = os.stat(cached.aci)
        known = read_memo(memo) == f"{stamp(before)} sha256:{expected}"  # unchanged since it was last hashed
        if not known:
            actual = Digest.of_file(cached.aci).hex
            if actual != expected:
                raise DigestMismatch(f"cached ACI {cached.aci}", f"sha256:{expected}", f"sha256:{actual}")
        if _link_into_place(cached.aci, dest):
            after = os.stat(cached.aci)
            if not known and stamp(after) == stamp(before) and is_settled(before):
                write_memo(memo, f"{stamp(after)} sha256:{expected}")
            return
        _atomic_copy(cached.aci, dest, mode=0o644, expected_sha256=expected)
    except OSError as err:
        raise OutputError(f"writing {dest}: {err.strerror or err}") from err


def _stamp_memo(cached_aci: str) -> str:
    """Where the stamp of a cached ACI's last check is kept (``conversions/<key>.stamp``)."""
    return os.path.splitext(cached_aci)[0] + ".stamp"


def damaged_in_cache(cached_aci: str) -> bool:
    """Check a cached ACI against its record now, whatever its stamp says (a file can
    change with no trace in ``stat``: a disk's bit rot, a write that set the mtime back).
    A damaged one loses its stamp, so that its next reuse finds it damaged too and the
    image is converted again (:func:`publish_copy`).

    Args:
        cached_aci: ``conversions/<key>.aci`` (:attr:`CachedConversion.aci`).

    Returns:
        Whether the file is not the one its record names; ``False`` when the record
        cannot be read (the next reuse decides).
    """
    try:
        with open(os.path.splitext(cached_aci)[0] + ".json", encoding="utf-8") as f:
            expected = json.load(f)["aci_sha256"]
        damaged = Digest.of_file(cached_aci).hex != expected
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if damaged:
        remove_quietly(_stamp_memo(cached_aci))
    return damaged


def _link_into_place(src: str, dest: str) -> bool:
    """Hard-link ``src`` as ``dest`` (mode 0644) through a temporary name, under a shared
    lock of the file, so that a cleaner (``gc``: :func:`~.atomic.remove_abandoned_in`)
    sees the temporary name as held, not as a killed writer's; ``False`` when the file
    system cannot (another device, no hard links)."""
    with contextlib.suppress(OSError):
        if os.path.samestat(os.stat(src), os.lstat(dest)):  # already in place: a rename would do nothing
            os.chmod(dest, 0o644)
            return True
    name = f"{TEMP_PREFIX}link-{os.path.basename(dest)}-{os.getpid()}{TEMP_SUFFIX}"  # a name cleaners know
    tmp = os.path.join(os.path.dirname(os.path.abspath(dest)), name)
    try:
        held = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        with contextlib.suppress(OSError):  # (no locks on this file system: nothing to keep a cleaner off)
            fcntl.flock(held, fcntl.LOCK_SH)
        try:
            os.link(src, tmp)
        except OSError:
            return False
        try:
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        finally:  # rename(2) leaves both names when dest became the same file meanwhile
            remove_quietly(tmp)
    finally:
        os.close(held)
    return True


def _blob_lock(digest: Digest) -> str:
    """The name in ``locks/`` of a blob's lock (``sha256-<hex>``)."""
    return f"{digest.algorithm}-{digest.hex}"


def _conversion_lock(key: str) -> str:
    """The name in ``locks/`` of a conversion's lock (``conversion-<key>``)."""
    return f"conversion-{key}"


_LOCK_FILE = re.compile(r"conversion-[0-9a-f]{64}|sha256-[0-9a-f]{64}|sha384-[0-9a-f]{96}|sha512-[0-9a-f]{128}")
"""The name of a lock file of the cache: a conversion's, or a blob's (``<algorithm>-<hex>``)."""
_CONVERSION_FILE = re.compile(r"([0-9a-f]{64})\.(aci|json|stamp)")
"""A file of the conversion cache: ``<key>.aci``, ``.json`` or ``.stamp``."""
_TAG_FILE = re.compile(r"[0-9a-f]{64}")
"""A tag record's name (:meth:`BlobCache.remember_tag`): the SHA-256 of the reference."""


@dataclass
class CacheGcReport:
    """What :func:`gc_cache` did.

    Attributes:
        conversions_removed: keys of the conversions removed (ACI, record and stamp).
        conversions_in_use: keys of those kept because their lock is held (being made
            or reused), or cannot be taken (a warning names it: :func:`cache_lock`).
        conversions_recent: keys of those kept because they were used within the grace
            period.
        blobs_removed, blobs_in_use, blobs_recent: the same for blobs (``sha256:<hex>``).
        locks_removed: names of the lock files of no entry (``locks/<name>``: left by a
            failed fetch or conversion) removed: nobody held them. (The lock files of the
            entries looked at go too, unless held, unreported.)
        bytes_freed: the sizes of the files removed whose last name it was (a cached ACI
            still linked as an output file frees nothing).
    """

    conversions_removed: list[str] = field(default_factory=list)
    conversions_in_use: list[str] = field(default_factory=list)
    conversions_recent: list[str] = field(default_factory=list)
    blobs_removed: list[str] = field(default_factory=list)
    blobs_in_use: list[str] = field(default_factory=list)
    blobs_recent: list[str] = field(default_factory=list)
    locks_removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def gc_cache(root: str, grace_seconds: float) -> CacheGcReport:
    """Remove the conversions and blobs of the cache ``root`` not used within
    ``grace_seconds`` (the last use is the mtime of a conversion's record and of a blob,
    which every reuse sets, like rkt's ``image gc --grace-period``), and the lock files
    nobody holds. An entry is removed only under its lock, taken without waiting (one
    being made or reused is kept): a conversion or run racing with this never sees half
    an entry. A blob a kept conversion was made from may go: the ACI is complete
    without it.

    Raises:
        OutputError: the lock directory cannot be written.
        OSError: a directory of the cache cannot be read.
    """
    report = CacheGcReport()
    now = time.time()
    conversions = os.path.join(root, "conversions")
    keys = sorted({m.group(1) for n in _names(conversions) if (m := _CONVERSION_FILE.fullmatch(n))})
    tried: set[str] = set()  # the entries' lock files (one gc could not take is not tried twice)
    for key in keys:  # the record first: one left without it is removed by the next gc
        files = [os.path.join(conversions, key + suffix) for suffix in (".json", ".aci", ".stamp")]
        tried.add(_conversion_lock(key))
        status = _remove_unused(root, _conversion_lock(key), files, now, grace_seconds, report)
        if status is not None:
            getattr(report, f"conversions_{status}").append(key)
    blobs = os.path.join(root, "blobs")
    for algorithm in _names(blobs, directories=True):
        for name in _names(os.path.join(blobs, algorithm)):
            try:
                digest = Digest.parse(f"{algorithm}:{name}")
            except InvalidManifest:  # not a blob of ours
                continue
            tried.add(_blob_lock(digest))
            status = _remove_unused(root, _blob_lock(digest), [os.path.join(blobs, algorithm, name)], now,
                                    grace_seconds, report)
            if status is not None:
                getattr(report, f"blobs_{status}").append(str(digest))
    tags = os.path.join(root, "tags")
    for name in _names(tags):  # a record whose manifest is gone resolves nothing (it would be asked again)
        path = os.path.join(tags, name)
        record = _tag_record(path) if _TAG_FILE.fullmatch(name) else None
        if record is None or os.path.lexists(os.path.join(blobs, record["digest"].algorithm, record["digest"].hex)):
            continue
        with contextlib.suppress(OSError):  # a record written since (a new file, renamed into place) stays
            info = os.lstat(path)
            if (info.st_dev, info.st_ino) == record["_file"]:
                report.bytes_freed += _remove_counted(path)
    for name in _names(os.path.join(root, "locks")):  # left by entries gone, or by failed fetches
        if name in tried or not _LOCK_FILE.fullmatch(name):  # not ours (a locks/ linked elsewhere): kept
            continue
        with cache_lock(root, name, wait=False) as held:
            if held:  # ours while held: a taker then finds the file gone and takes a new one
                remove_quietly(os.path.join(root, "locks", name))
                report.locks_removed.append(name)
    return report


def _remove_unused(root: str, lock: str, files: list[str], now: float, grace_seconds: float,
                   report: CacheGcReport) -> str | None:
    """Remove the files of one cache entry under its lock ``lock`` unless it is held or
    the first file was used within ``grace_seconds`` (a missing first file: unused);
    adds the bytes freed to ``report``. The lock file goes too unless it is held (the
    next taker makes another).

    Returns:
        ``"removed"``, ``"in_use"``, ``"recent"``, or ``None`` when none of the files is there.
    """
    with cache_lock(root, lock, wait=False) as held:
        if not held:
            return "in_use" if any(os.path.lexists(path) for path in files) else None
        try:
            if not any(os.path.lexists(path) for path in files):
                return None
            try:
                used: float | None = os.lstat(files[0]).st_mtime
            except FileNotFoundError:
                used = None
            if used is not None and max(now - used, 0.0) < grace_seconds:  # used "later" (the clock went back): now
                return "recent"
            for path in files:
                report.bytes_freed += _remove_counted(path)
            return "removed"
        finally:  # last, while held: a lock file gone guards nothing (a taker makes another, :func:`cache_lock`)
            remove_quietly(os.path.join(root, "locks", lock))


def _remove_counted(path: str) -> int:
    """Remove ``path`` if it is there; the bytes that frees (its size when it was the
    file's last name)."""
    try:
        info = os.lstat(path)
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return info.st_size if info.st_nlink == 1 else 0


def _names(directory: str, *, directories: bool = False) -> list[str]:
    """The names of the regular files (or the directories) in ``directory``, sorted;
    none when it is missing."""
    try:
        with os.scandir(directory) as entries:
            return sorted(e.name for e in entries
                          if (e.is_dir(follow_symlinks=False) if directories else e.is_file(follow_symlinks=False)))
    except FileNotFoundError:
        return []
