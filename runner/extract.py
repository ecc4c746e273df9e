"""Render an ACI: stream its tar and write ``rootfs/`` into a directory, safely.

An ACI (appc spec, ``spec/aci.md``, "Image Archives") is a tar, optionally compressed
with gzip, bzip2 or xz, holding a ``manifest`` file and a ``rootfs`` directory. This
module reads it once, front to back, without holding it in memory, and writes the
rootfs entries itself rather than through :meth:`tarfile.TarFile.extractall`: the
``data`` filter refuses absolute symbolic link targets, which are legitimate content
(public case 13).

Safety rules (public case 12):

* entry names and hard-link targets are archive paths; an absolute one, or one with a
  ``..`` component, is refused with an error naming the entry;
* the parent directories of an entry are resolved inside the tree (absolute links
  restart at the rootfs root); a link on the way that leads outside is refused;
* hard links must name an existing non-directory inside ``rootfs/``;
* symbolic link targets are stored verbatim: they are only interpreted at run time,
  inside the chroot.

Metadata (appc: files keep their properties): permission bits including setuid, setgid
and sticky; numeric owners (only applied when running as root); modification times;
extended attributes from ``SCHILY.xattr.*`` PAX records. Device nodes are created only
when running as root, otherwise skipped with a warning (public case 16). Directory modes
and times are applied after their contents. Names are byte-exact (UTF-8 with
``surrogateescape``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Literal, cast

from converters.numbers import MAX_OWNER_ID, pax_time_ns
from docker2aci import acifile
from docker2aci.acifile import READ_ERRORS, UncompressedStream
from docker2aci.digest import Digest
from docker2aci.errors import InvalidACI, RunnerError
from runner.fstree import remove_tree, walk
from runner.paths import Escape, PathEscapeError, make_dirs_in_root, resolve_in_root

logger = logging.getLogger(__name__)

#: Largest ``manifest`` entry accepted, in bytes.
MAX_MANIFEST_BYTES = 1 << 20

#: Chunk size used to copy file contents, in bytes.
COPY_CHUNK = 1 << 20

_XATTR_PREFIX = "SCHILY.xattr."
_TOLERANT_XATTR_NAMESPACES = ("security.", "trusted.")
_UNSUPPORTED_ERRNOS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})

StreamMode = Literal["r|gz", "r|bz2", "r|xz", "r|"]

_STREAM_MODES: dict[str, StreamMode] = {"gzip": "r|gz", "bzip2": "r|bz2", "xz": "r|xz", "none": "r|"}


class EntryError(RunnerError):
    """One tar entry of an ACI is unsafe or cannot be written.

    Attributes:
        entry: the entry name as stored in the archive.
        reason: what is wrong with it.
        archive: the ACI the entry came from, once known.
    """

    reference = "unsafe-entry"

    def __init__(self, entry: str, reason: str, archive: str | None = None) -> None:
        prefix = f"rendering {archive}: " if archive is not None else ""
        super().__init__(f"{prefix}entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason
        self.archive = archive


@dataclass(frozen=True)
class _DirMeta:
    """Metadata of a directory, applied once all entries are written.

    Attributes:
        mode: permission bits (``0o7777`` mask).
        mtime_ns: modification time, nanoseconds since the epoch.
    """

    mode: int
    mtime_ns: int


@contextlib.contextmanager
def _runner_errors() -> Iterator[None]:
    """Runner's boundary with :mod:`docker2aci.acifile`: its :class:`InvalidACI` becomes a
    :class:`RunnerError` with the same message (an :class:`EntryError` when an entry is at
    fault)."""
    try:
        yield
    except InvalidACI as err:
        if err.entry is not None:
            raise EntryError(err.entry, err.reason) from err
        raise RunnerError(str(err)) from err


def sniff_stream_mode(head: bytes) -> StreamMode:
    """Choose the :func:`tarfile.open` stream mode from an archive's first bytes
    (:func:`docker2aci.acifile.sniff_compression`; appc ``spec/aci.md``, "Image Archives").

    Args:
        head: at least the first 6 bytes of the file (fewer for tiny files).

    Returns:
        ``"r|gz"``, ``"r|bz2"``, ``"r|xz"`` or ``"r|"`` (plain tar).

    Raises:
        RunnerError: the bytes name a compression that ACIs do not use (zstd).
    """
    with _runner_errors():
        return _STREAM_MODES[acifile.sniff_compression(head)]


def compression_name(head: bytes) -> str:
    """Name an ACI's compression from its first bytes: ``gzip``, ``bzip2``, ``xz``, or
    ``none`` (a plain tar, or anything else); see :func:`docker2aci.acifile.compression_name`."""
    return acifile.compression_name(head)


def render_aci(
    aci_path: str | os.PathLike[str],
    rootfs: str | os.PathLike[str],
    *,
    image_id: str | None = None,
    directory_times: dict[str, int] | None = None,
    keep: Callable[[str, bool], bool] | None = None,
) -> dict[str, Any]:
    """Write the ``rootfs/`` of an ACI into a directory and return its manifest.

    The archive is read once as a stream. ``rootfs`` is normally a fresh directory; when
    it already holds a tree (the image's dependencies, rendered first), entries replace
    what they name (tar semantics: the last entry wins; directories merge). Entries
    outside ``rootfs/`` other than ``manifest`` are ignored.

    Args:
        aci_path: the ACI file (gzip, bzip2, xz or plain tar; chosen from the bytes).
        rootfs: an existing directory that becomes the image's ``/``.
        image_id: when given (``sha512-`` + 128 hex), the uncompressed tar must hash to
            it (appc ``spec/aci.md``, "Image ID"); the tree is written first, so a caller
            that renders into a private place and publishes afterwards never publishes a
            tree of other bytes.
        directory_times: receives ``{host path: mtime in nanoseconds}`` of every directory the ACI
            names, so that a caller rendering several images into one tree can give
            each directory its last image's time once all are written.
        keep: ``keep(path, is_directory)`` says whether an entry under ``rootfs/`` is
            written (``path`` as the app sees it, ``/usr/bin/x``; the ``pathWhitelist``
            rules of a chain, :func:`runner.treestore.render_chain`). What it refuses is
            not written into the tree (a directory an allowed entry needs is made, as
            rkt makes it); a file, link or FIFO it refuses goes to a private directory
            beside ``rootfs`` (in the same directory, which must be writable), removed once
            the image is written, for a hard link of the image to it.

    Returns:
        The parsed image manifest (appc ``spec/types.md``, "Image Manifest Schema").

    Raises:
        EntryError: an entry is unsafe (absolute, ``..``, escaping link) or unwritable;
            it names the entry.
        RunnerError: the file cannot be read, is not a tar, has no valid manifest or no
            ``rootfs`` (neither the directory nor an entry under it), or does not have the
            image ID asked for.
    """
    root = os.fspath(rootfs)
    where = os.fspath(aci_path)
    with errors_named("rendering", where), open_uncompressed(aci_path) as stream:
        with acifile.open_tar(stream) as archive:
            renderer = _Renderer(archive, stream, root, keep)
            manifest = renderer.run()
            if directory_times is not None:
                directory_times.update((path, meta.mtime_ns) for path, meta in renderer.directories.items())
        found = stream.image_id()
    if image_id is not None and found != image_id:
        raise RunnerError(f"rendering {where}: its image ID is {found}, not {image_id}")
    return manifest


def compute_image_id(aci_path: str | os.PathLike[str]) -> str:
    """The image ID of an ACI: ``sha512-`` + the hex SHA-512 of the uncompressed tar
    (appc ``spec/aci.md``, "Image ID"), read as a stream.

    Raises:
        RunnerError: the file cannot be read or decompressed.
    """
    return compute_digests(aci_path)[1]


def compute_digests(aci_path: str | os.PathLike[str]) -> tuple[str, str]:
    """The SHA-256 of an ACI file as it is (``sha256:<hex>``) and its image ID, from one
    read of the same bytes (so the two always describe one file, even one that is being
    replaced).

    Raises:
        RunnerError: the file cannot be read or decompressed.
    """
    with errors_named("reading", os.fspath(aci_path)):
        return acifile.digests(aci_path)


def file_digest(path: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` of a file's bytes.

    Raises:
        RunnerError: the file cannot be read.
    """
    try:
        return str(Digest.of_file(path))
    except OSError as err:
        raise RunnerError(f"reading {os.fspath(path)}: {err.strerror or err}") from err


def read_manifest(aci_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The image manifest of an ACI, read without writing anything (the archive is read
    up to its ``manifest`` entry, the first one in ACIs written by docker2aci and actool;
    :func:`docker2aci.acifile.read_manifest`). Entry names on the way must be safe
    (:func:`archive_components`).

    Raises:
        EntryError: an unsafe entry name, or a manifest entry that is not a regular file of
            at most :data:`MAX_MANIFEST_BYTES`.
        RunnerError: the file cannot be read, is not a tar, or has no valid manifest.
    """
    with errors_named("reading", os.fspath(aci_path)):
        return acifile.read_manifest(aci_path, limit=MAX_MANIFEST_BYTES, is_manifest=_is_manifest)


def _is_manifest(name: str) -> bool:
    return archive_components(name) == ["manifest"]


@contextlib.contextmanager
def errors_named(verb: str, where: str) -> Iterator[None]:
    """Turn every failure of reading an ACI into an error that names it.

    Raises:
        EntryError: an entry's error (also an :class:`InvalidACI` naming an entry), with
            the archive named.
        RunnerError: ``"<verb> <where>: <reason>"`` for anything else that went wrong
            (:class:`InvalidACI`, :data:`docker2aci.acifile.READ_ERRORS`).
    """
    try:
        yield
    except EntryError as err:
        raise EntryError(err.entry, err.reason, archive=where) from err
    except InvalidACI as err:
        if err.entry is not None:
            raise EntryError(err.entry, err.reason, archive=where) from err
        raise RunnerError(f"{verb} {where}: {err}") from err
    except RunnerError as err:
        raise RunnerError(f"{verb} {where}: {err}") from err
    except READ_ERRORS as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err  # not "[Errno 2] ...: 'path'"
        raise RunnerError(f"{verb} {where}: {reason}") from err


def parse_manifest(data: bytes) -> dict[str, Any]:
    """Parse an ``ImageManifest`` (appc ``spec/types.md``;
    :func:`docker2aci.acifile.parse_manifest`).

    Raises:
        RunnerError: not JSON, or not an object with ``acKind`` ``ImageManifest``.
    """
    with _runner_errors():
        return acifile.parse_manifest(data)


def open_uncompressed(aci_path: str | os.PathLike[str]) -> UncompressedStream:
    """Open an ACI for reading its uncompressed tar (a context manager); the compression
    (gzip, bzip2, xz or none) is chosen from the first bytes
    (:func:`docker2aci.acifile.open_uncompressed`). The stream's ``image_id()`` and
    ``file_digest()`` finish the read and give ``sha512-<hex>`` and ``sha256:<hex>``.

    Raises:
        OSError: the file cannot be opened.
        RunnerError: a compression ACIs do not use (zstd).
    """
    with _runner_errors():
        return acifile.open_uncompressed(aci_path)


def archive_components(name: str) -> list[str]:
    """Split an archive path into components, refusing anything that could escape.

    Args:
        name: an entry name or hard-link target as stored in the tar.

    Returns:
        The components, with empty and ``.`` components dropped.

    Raises:
        EntryError: the name is absolute, has a ``..`` component or holds a NUL byte
            (a PAX record can carry one; the kernel would cut the path there).
    """
    if name.startswith("/"):
        raise EntryError(name, "absolute names are not allowed in an ACI")
    if "\0" in name:
        raise EntryError(name, "a NUL byte is not allowed in names")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise EntryError(name, "'..' is not allowed in names")
    return parts


_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
"""Errors of a write that no entry causes."""


class _Renderer:
    """One pass over an ACI tar (``archive``, read from ``stream``), writing ``rootfs/``
    entries under ``root``."""

    def __init__(self, archive: tarfile.TarFile, stream: UncompressedStream, root: str,
                 keep: Callable[[str, bool], bool] | None = None) -> None:
        self._archive = archive
        self._stream = stream
        self._keep = keep
        self._stash: str | None = None  # where refused files are written, for hard links to them
        self._stashed: dict[str, str] = {}  # path in the image ("usr/bin/x") -> its file in the stash
        self._stash_count = 0  # files made in the stash (each is named by its number)
        self._root = root
        self._is_root = os.geteuid() == 0
        self._dirs: dict[str, _DirMeta] = {}
        self._manifest: bytes | None = None
        self._has_rootfs = False

    @property
    def directories(self) -> Mapping[str, _DirMeta]:
        """Host path → mode and time of every directory entry seen."""
        return self._dirs

    def run(self) -> dict[str, Any]:
        """Process every entry, then apply directory metadata and parse the manifest.

        Raises:
            InvalidACI: the entries end at damage (:func:`docker2aci.acifile.check_end`).
        """
        last: str | None = None
        try:
            for member in self._members():
                self._entry(member)
                last = member.name
            acifile.check_end(self._archive, self._stream, last)
        finally:
            if self._stash is not None:
                remove_tree(self._stash, ignore_errors=True)
        self._finish_dirs()
        if self._manifest is None:
            raise RunnerError("no 'manifest' entry: not an ACI")
        if not self._has_rootfs:  # spec/aci.md: an image archive holds manifest and rootfs (a directory)
            raise RunnerError("no 'rootfs' directory: not an ACI")
        return parse_manifest(self._manifest)

    def _members(self) -> Iterator[tarfile.TarInfo]:
        while (member := self._archive.next()) is not None:
            yield member

    def _entry(self, member: tarfile.TarInfo) -> None:
        parts = archive_components(member.name)
        if parts == ["manifest"]:
            self._read_manifest(member)
            return
        if not parts or parts[0] != "rootfs":
            logger.debug("ignoring entry %r outside rootfs/", member.name)
            return
        self._has_rootfs = True
        path = "/".join(parts[1:])
        try:
            if self._keep is None or not path or self._keep("/" + path, member.isdir()):
                self._rootfs_entry(member, parts[1:])
                self._stashed.pop(path, None)  # a later entry of the name is the one linked to
            elif not member.isdir():  # not in the tree; a hard link of this image to it is made from the stash
                self._stash_entry(member, path)
        except PathEscapeError as err:
            raise EntryError(
                member.name, "its parent leads outside the rootfs through a symbolic link"
            ) from err
        except EntryError:
            raise
        except RunnerError as err:
            raise EntryError(member.name, str(err)) from err
        except OSError as err:
            if err.errno in _DISK_FULL:  # the disk's fault, not the entry's: name where it goes
                raise RunnerError(f"writing into {self._root}: {err.strerror}") from err
            raise EntryError(member.name, err.strerror or str(err)) from err
        except (OverflowError, ValueError) as err:  # a PAX uid past 64 bits, an mtime of nan
            raise EntryError(member.name, f"its metadata cannot be applied: {err}") from err

    def _read_manifest(self, member: tarfile.TarInfo) -> None:
        if self._manifest is not None:
            # the signature's name, the dependencies and the identity checks were read
            # from the first one (read_manifest): a second could run another app
            raise EntryError(member.name, "given twice: an ACI has one manifest")
        with _runner_errors():
            self._manifest = acifile.read_entry(self._archive, member, MAX_MANIFEST_BYTES)

    def _rootfs_entry(self, member: tarfile.TarInfo, rel: list[str]) -> None:
        """Write one entry under ``rootfs/`` (``rel``: its path's components below it)."""
        if not rel:
            if not member.isdir():
                raise EntryError(member.name, "rootfs is not a directory")
            self._chown(self._root, member)
            self._dirs[self._root] = _DirMeta(member.mode & 0o7777, _mtime_ns(member))
            return
        parent = make_dirs_in_root(self._root, "/".join(rel[:-1]), escape=Escape.REFUSE)
        target = os.path.join(parent, rel[-1])
        if member.isdir():
            self._directory(member, target)
            return
        self._make_room(target)
        self._write(member, target)

    def _write(self, member: tarfile.TarInfo, target: str) -> None:
        """Write a non-directory entry at ``target``, where nothing is."""
        if member.islnk():
            self._hard_link(member, target)
            return
        if member.issym():
            if "\0" in member.linkname:
                raise EntryError(member.name, "a NUL byte is not allowed in a link target")
            os.symlink(member.linkname, target)
        elif member.isreg():
            self._regular(member, target)
        elif member.isfifo():
            os.mkfifo(target, 0o600)
        elif member.ischr() or member.isblk():
            if not self._device(member, target):
                return
        else:
            logger.warning("skipping entry %r: unsupported tar type %r", member.name, member.type)
            return
        self._apply_meta(target, member)

    def _directory(self, member: tarfile.TarInfo, target: str) -> None:
        try:
            existing = os.lstat(target).st_mode
        except FileNotFoundError:
            existing = None
        if existing is not None and not stat.S_ISDIR(existing):
            os.unlink(target)
            existing = None
        if existing is None:
            os.mkdir(target, 0o700)
        else:  # a directory of an image below (a dependency): this entry's xattrs replace its
            self._drop_other_xattrs(target, member)
        self._chown(target, member)
        self._set_xattrs(target, member)
        self._dirs[target] = _DirMeta(member.mode & 0o7777, _mtime_ns(member))

    def _make_room(self, target: str) -> None:
        """Remove what a later entry replaces (tar semantics: the last entry wins)."""
        try:
            mode = os.lstat(target).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            remove_tree(target)
        else:
            os.unlink(target)

    def _hard_link(self, member: tarfile.TarInfo, target: str) -> None:
        try:
            parts = archive_components(member.linkname)
        except EntryError as err:
            raise EntryError(
                member.name, f"hard link target {member.linkname!r}: {err.reason}"
            ) from err
        if len(parts) < 2 or parts[0] != "rootfs":
            raise EntryError(member.name, f"hard link target {member.linkname!r} is not in rootfs/")
        if "/".join(parts[1:]) in self._stashed:  # a file this image holds that keep refused
            os.link(self._stashed["/".join(parts[1:])], target, follow_symlinks=False)
            return
        try:
            source = resolve_in_root(
                self._root, "/".join(parts[1:]), follow_final=False, escape=Escape.REFUSE
            )
        except PathEscapeError as err:
            raise EntryError(
                member.name, f"hard link target {member.linkname!r} leads outside the rootfs"
            ) from err
        try:
            source_mode = os.lstat(source).st_mode
        except FileNotFoundError:
            itself = " (it names the entry itself)" if source == target else ""
            raise EntryError(
                member.name, f"hard link target {member.linkname!r} does not exist{itself}"
            ) from None
        if stat.S_ISDIR(source_mode):
            raise EntryError(member.name, f"hard link target {member.linkname!r} is a directory")
        os.link(source, target, follow_symlinks=False)

    def _regular(self, member: tarfile.TarInfo, target: str) -> None:
        data = self._archive.extractfile(member)
        assert data is not None  # a regular file always has data
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(target, flags, 0o600), "wb") as out:
            if member.sparse is None:
                shutil.copyfileobj(data, out, COPY_CHUNK)
            else:
                regions = cast("list[tuple[int, int]]", member.sparse)  # typeshed says bytes
                _copy_sparse(data, out, regions, member.size)

    def _device(self, member: tarfile.TarInfo, target: str) -> bool:
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        if not self._is_root:
            logger.warning("skipping device node %r: creating it needs root", member.name)
            return False
        try:
            os.mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        except PermissionError:
            logger.warning("skipping device node %r: mknod not permitted here", member.name)
            return False
        return True

    def _apply_meta(self, target: str, member: tarfile.TarInfo) -> None:
        """Owner, then mode (chown clears setuid), then xattrs, then times."""
        self._chown(target, member)
        if not member.issym():
            os.chmod(target, member.mode & 0o7777)
        self._set_xattrs(target, member)
        _set_mtime(target, _mtime_ns(member))

    def _chown(self, target: str, member: tarfile.TarInfo) -> None:
        if self._is_root:
            for field, value in (("uid", member.uid), ("gid", member.gid)):
                if not 0 <= value <= MAX_OWNER_ID:  # chown would cut it to 32 bits, or refuse
                    raise EntryError(member.name, f"{field} {value} is out of range (0-{MAX_OWNER_ID})")
            try:
                os.chown(target, member.uid, member.gid, follow_symlinks=False)
            except OSError as err:
                if err.errno != errno.EINVAL:
                    raise
                raise EntryError(member.name, f"its owner {member.uid}:{member.gid} cannot be set: this user "
                                 "namespace maps no such id (root of a user namespace, 'unshare -r'?)") from err

    def _set_xattrs(self, target: str, member: tarfile.TarInfo) -> None:
        for name, value in _xattrs(member.pax_headers):
            try:
                os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as err:
                tolerated = name.startswith(_TOLERANT_XATTR_NAMESPACES)
                if not tolerated and err.errno not in _UNSUPPORTED_ERRNOS:
                    raise EntryError(
                        member.name, f"setting xattr {name!r}: {err.strerror}"
                    ) from err
                logger.warning("entry %r: xattr %r not set: %s", member.name, name, err.strerror)

    def _drop_other_xattrs(self, target: str, member: tarfile.TarInfo) -> None:
        """Remove the xattrs of an existing directory that ``member`` does not carry: the
        uppermost entry of a path gives all its metadata (appc's renderer extracts only
        that one; umoci clears a directory's xattrs before setting a layer's). The host's
        ``security.selinux`` label is not the image's, and is left alone."""
        keep = {name for name, _ in _xattrs(member.pax_headers)}
        try:
            names = os.listxattr(target, follow_symlinks=False)
        except OSError as err:
            if err.errno in _UNSUPPORTED_ERRNOS:
                return
            raise
        for name in names:
            if name in keep or name == "security.selinux":
                continue
            try:
                os.removexattr(target, name, follow_symlinks=False)
            except OSError as err:
                if not name.startswith(_TOLERANT_XATTR_NAMESPACES) and err.errno not in _UNSUPPORTED_ERRNOS:
                    raise EntryError(member.name, f"removing xattr {name!r}: {err.strerror}") from err
                logger.warning("entry %r: xattr %r not removed: %s", member.name, name, err.strerror)

    def _stash_entry(self, member: tarfile.TarInfo, path: str) -> None:
        """Write a non-directory entry that ``keep`` refused into the stash, a private
        directory beside the root (the render's own directory, on the same file system)
        made for this image and removed once it is written, so that a hard link of the
        image to it (``--nosquash`` chains have them: a layer's file, link or FIFO that an
        upper layer deleted, another name of which stays) gets it, data and metadata."""
        if self._stash is None:
            stash = os.path.join(os.path.dirname(os.path.realpath(self._root)),
                                 f".docker2aci-refused-{secrets.token_hex(8)}")
            os.mkdir(stash, 0o700)
            self._stash = stash
        target = os.path.join(self._stash, str(self._stash_count))
        self._stash_count += 1
        self._write(member, target)
        self._stashed[path] = target

    def _finish_dirs(self) -> None:
        """Apply directory modes and times, deepest first, once their contents exist.

        Each directory is reached from the root one component at a time, following no
        symbolic link: a later entry may have replaced a directory on the way with a link
        (``rootfs/a/b/``, then ``rootfs/./a -> /host/dir``), and ``chmod`` by path would
        follow it out of the root. Such a directory is no longer in the tree; it is skipped.
        """
        for path in sorted(self._dirs, key=lambda p: p.count("/"), reverse=True):
            meta = self._dirs[path]
            if path == self._root:  # the caller's directory (a link to one too)
                os.chmod(path, meta.mode)
                _set_mtime(path, meta.mtime_ns, follow=True)
                continue
            parent = _open_parent_in_root(self._root, path)
            if parent is None:
                continue  # replaced by a later entry
            name = os.path.basename(path)
            try:
                if not stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
                    continue  # replaced by a later entry (a link, a file)
                os.chmod(name, meta.mode, dir_fd=parent)  # a directory, checked above: nothing to follow
                _set_mtime(name, meta.mtime_ns, dir_fd=parent)
            except FileNotFoundError:
                continue
            finally:
                os.close(parent)


def _open_parent_in_root(root: str, path: str) -> int | None:
    """An ``O_PATH`` descriptor of the directory holding ``path`` (below ``root``), opened
    one component at a time without following symbolic links: ``O_PATH`` needs search
    permission only, as ``chmod`` by path does, and no ``/proc``. ``None`` when a
    component is missing, is not a directory or is a symbolic link.

    Raises:
        OSError: a component cannot be opened for another reason.
    """
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    rel = os.path.relpath(os.path.dirname(path), root)
    try:
        for part in [] if rel == "." else rel.split(os.sep):
            try:
                inner = os.open(part, flags, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    os.close(fd)
                    return None
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _xattrs(pax_headers: Mapping[str, str]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, value)`` pairs from ``SCHILY.xattr.*`` PAX records, byte-exact."""
    for key, value in pax_headers.items():
        if key.startswith(_XATTR_PREFIX):
            yield key[len(_XATTR_PREFIX) :], value.encode("utf-8", "surrogateescape")


def restore_directory_times(rootfs: str, times: Mapping[str, int]) -> None:
    """Give every directory of ``rootfs`` named in ``times`` its time (nanoseconds) again (after later
    images of a chain wrote into it), walking the tree without following symlinks."""
    for directory, _dirs, _files in walk(rootfs):
        mtime = times.get(directory)
        if mtime is not None:
            _set_mtime(directory, mtime)


def _mtime_ns(member: tarfile.TarInfo) -> int:
    """An entry's modification time in nanoseconds: exact from its PAX ``mtime`` record
    (:func:`converters.numbers.pax_time_ns`), else from the header's seconds."""
    exact = pax_time_ns(member.pax_headers.get("mtime", ""))
    return exact if exact is not None else int(member.mtime * 1_000_000_000)


def _set_mtime(path: str, mtime_ns: int, *, dir_fd: int | None = None, follow: bool = False) -> None:
    """Set the access and modification times of ``path`` to ``mtime_ns`` nanoseconds
    (relative to ``dir_fd`` when given): of a final symbolic link itself unless ``follow``."""
    os.utime(path, ns=(mtime_ns, mtime_ns), dir_fd=dir_fd, follow_symlinks=follow)


def _copy_sparse(
    data: IO[bytes], out: IO[bytes], regions: list[tuple[int, int]], size: int
) -> None:
    """Copy the data regions of a sparse member, leaving holes unwritten.

    Args:
        data: the member's contents as :meth:`tarfile.TarFile.extractfile` gives them.
        out: the destination file, open for writing at offset 0.
        regions: ``(offset, length)`` pairs in bytes, ascending.
        size: the file's full length in bytes.
    """
    source = getattr(data, "raw", data)  # the buffered wrapper refuses to seek a stream
    for offset, length in regions:
        source.seek(offset)
        out.seek(offset)
        remaining = length
        while remaining:
            chunk = source.read(min(COPY_CHUNK, remaining))
            if not chunk:
                raise RunnerError("sparse member ends early")
            out.write(chunk)
            remaining -= len(chunk)
    out.truncate(size)
