"""Squash: uncompressed layer tars (base first) → one merged ``rootfs/`` tree → tar entries.

Semantics (image-spec layer.md "Applying Changesets", "Whiteouts"; overlayfs as Docker
runs it):

* Layers apply base first. In each layer, whiteouts and opaque markers apply first, and
  only to lower layers, whatever their position in the stream; then the layer's other
  entries apply in stream order, a later duplicate replacing an earlier one. A whiteout's
  directory is reached through symbolic links in the tree, as umoci reaches it.
* ``.wh.<name>`` removes ``<name>`` and its subtree; ``.wh..wh..opq`` empties its
  directory of lower-layer content; other ``.wh..wh.*`` (AUFS metadata) are dropped, and
  so is everything below a ``.wh.*`` directory (hard links into AUFS's ``.wh..wh.plnk``
  still resolve). No whiteout name is ever emitted.
* A non-directory replaces a directory with its subtree, and the reverse; two
  directories merge (the upper one's metadata wins). An entry under a non-directory
  parent turns that parent into a directory (overlayfs's rule, as dockerd's overlay2
  gives it; umoci follows a link there and refuses a file), and the layer's whiteouts
  below it then remove nothing of the lower layers.
* Hard links share an inode: replacing or deleting one name never changes the others
  (public cases 2 and 4). On output, the first surviving name of each group in output
  order carries the data and the others link to it, so a link never dangles.
* Names escaping the root, escaping relative symlinks, hard links to missing or
  escaping targets, names and link targets holding a NUL byte (a PAX record can) and
  device numbers a tar header cannot hold are refused with
  :class:`UnsafeEntry`, naming the entry; member sizes that are negative or past any
  file offset make the layer a :class:`BadLayer`.

Output: entries sorted by path (parents before children), headers in PAX format built
from what the layer said (type, mode incl. setuid/sticky, uid/gid, uname/gname, mtime,
device numbers, ``SCHILY.xattr.*``), never inventing metadata. Directories that no
layer names (implicit parents) are not emitted: extractors create them, as for the
layers themselves.
"""

from __future__ import annotations

import math
import re
import tarfile
from collections import deque
from dataclasses import dataclass
from typing import IO, BinaryIO, Iterator, Mapping, Protocol, Sequence

from . import native
from .errors import BadLayer, UnsafeEntry
from .numbers import MAX_OWNER_ID, pax_time_ns
from .tarpaths import EscapingPath, Path, clean_member_name, is_escaping_link

OPAQUE_MARKER = ".wh..wh..opq"
WHITEOUT_PREFIX = ".wh."
MAX_SYMLINK_HOPS = 40
"""Symlinks followed when resolving a path inside the tree (as Linux's MAXSYMLINKS)."""
MAX_NAME_BYTES = 4096
"""Longest entry name or link target accepted (Linux's PATH_MAX), in bytes."""
MAX_RESOLVE_LINK_CHARS = MAX_NAME_BYTES
"""Link-target characters :meth:`RootfsTree.resolve` follows at most in one resolution, all
its links together; past them a file read finds nothing, as after too many links, and a
whiteout or opaque marker is refused (:meth:`RootfsTree._whiteout_dir`). Linux has
no such limit, only :data:`MAX_SYMLINK_HOPS` links of up to :data:`MAX_NAME_BYTES` each,
but a real way holds a few short links; this keeps a whiteout's or a file read's work to
about that of one more PATH_MAX name, where 40 long links would cost 40 times that (one
resolution per whiteout, and a layer can hold thousands)."""
MAX_HEADER_BYTES = 1 << 20
"""Longest PAX or GNU long-name header read, in bytes."""
MAX_DEVICE_NUMBER = 8 ** 7 - 1
"""Largest device major or minor number a ustar header holds (7 octal digits); the ACI is
written in PAX format, which has no record for bigger ones."""
MAX_MEMBER_BYTES = (1 << 62) - 1
"""Largest member size accepted from a header (bytes): past it no file offset fits."""

STDIO_LINKS = (
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/dev/console"),
    ("stderr", "/dev/console"),
    ("fd", "/proc/self/fd"),
)
"""The links docker2aci adds under ``/dev`` when an image lacks them (its ``writeStdioSymlinks``)."""

_XATTR_PREFIX = "SCHILY.xattr."
_SUPPORTED_TYPES = frozenset(
    {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.SYMTYPE,
     tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE}
)
_DEVICE_TYPES = frozenset({tarfile.CHRTYPE, tarfile.BLKTYPE})


class TarSink(Protocol):
    """Where :meth:`RootfsTree.write` puts entries: ``tarfile.TarFile`` or
    :class:`converters.tarwriter.TarWriter`."""

    def addfile(self, tarinfo: tarfile.TarInfo, fileobj: IO[bytes] | None = None) -> None: ...


class Inode:
    """A non-directory object; several tree names share one after a hard link.

    Attributes:
        header: the tar header that created it (type, mode, owner, times, xattrs).
        layer: index of the layer whose spool holds its data (regular files).
    """

    __slots__ = ("header", "layer")

    def __init__(self, header: tarfile.TarInfo, layer: int) -> None:
        self.header = header
        self.layer = layer


class Node:
    """A name in the merged tree: a directory (``children``) or a link to an inode.

    Attributes:
        header: the directory's header, ``None`` for an implicit directory.
        children: child name → node, for directories; ``None`` otherwise.
        inode: the object, for non-directories.
        layer: index of the layer that last set this name (or a directory's header);
            ``-1`` for implicit directories.
    """

    __slots__ = ("header", "children", "inode", "layer")

    def __init__(self, header: tarfile.TarInfo | None = None, children: dict[str, Node] | None = None,
                 inode: Inode | None = None, layer: int = -1) -> None:
        self.header = header
        self.children = children
        self.inode = inode
        self.layer = layer

    @property
    def is_dir(self) -> bool:
        return self.children is not None

    @classmethod
    def directory(cls, header: tarfile.TarInfo | None, layer: int = -1) -> Node:
        return cls(header=header, children={}, layer=layer)


@dataclass(frozen=True)
class LayerTar:
    """One uncompressed layer tar, seekable, for the squash.

    Attributes:
        name: the layer's name in messages (a digest or a position).
        file: a seekable binary file holding the whole tar (may be empty: an empty layer).
    """

    name: str
    file: BinaryIO


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses PAX and GNU long-name headers over :data:`MAX_HEADER_BYTES`
    instead of reading them whole into memory, and decodes the common header faster."""

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        """:meth:`tarfile.TarInfo.frombuf` with the same result, in one pass for the usual
        header (octal numbers, a checksum that matches unsigned, no old GNU sparse map);
        anything else is left to tarfile, which also raises its errors."""
        fields = _decode_usual(buf) if encoding == "utf-8" and errors == "surrogateescape" else \
            _decode(buf, encoding, errors)
        if fields is None:
            return super().frombuf(buf, encoding, errors)
        return cls.from_fields(fields)

    @classmethod
    def from_fields(cls, fields: HeaderFields) -> BoundedTarInfo:
        """The header :meth:`frombuf` makes of a usual header's decoded ``fields``."""
        obj = cls()
        (obj.name, obj.mode, obj.uid, obj.gid, obj.size, obj.mtime, obj.chksum, obj.type, obj.linkname,
         obj.uname, obj.gname, obj.devmajor, obj.devminor, prefix) = fields
        if obj.type == tarfile.AREGTYPE and obj.name.endswith("/"):
            obj.type = tarfile.DIRTYPE  # old V7 tar: a directory is a file with a trailing slash
        if obj.isdir():
            obj.name = obj.name.rstrip("/")
        if prefix and obj.type not in tarfile.GNU_TYPES:
            obj.name = prefix + "/" + obj.name  # a ustar long name
        return obj

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        # A negative size (base-256 or PAX ``size``) would move tarfile's offset backwards
        # (a negative seek, or the same headers read again) or read a long-name header to EOF;
        # a huge one overflows the seek.
        # tarfile's sparse-map parsing raises IndexError on a truncated extension block and
        # ValueError on bad numbers: a malformed header, as any other.
        self._check_size(self)
        try:
            member = super()._proc_member(tarfile)  # type: ignore[misc]
        except (ValueError, IndexError) as err:
            raise _malformed(self, err) from err
        self._check_size(member)
        return member

    @staticmethod
    def _check_size(member: tarfile.TarInfo) -> None:
        if not 0 <= member.size <= MAX_MEMBER_BYTES:
            raise tarfile.HeaderError(f"size {member.size} in the header of {member.name!r} is out of range")

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        self._check_header_size()
        return super()._proc_pax(tarfile)  # type: ignore[misc]

    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        self._check_header_size()
        return super()._proc_gnulong(tarfile)  # type: ignore[misc]

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: Mapping[str, str],  # type: ignore[override]
                           archive: tarfile.TarFile) -> None:
        """Read a GNU sparse 1.0 map (PAX ``GNU.sparse.major`` 1), as tarfile does: at the
        start of the member's data, a line with the count of regions, then a line with the
        offset and one with the length of each. The map is an extended header, held to
        :data:`MAX_HEADER_BYTES`: tarfile read as many lines as the count claimed (a 16 KiB
        gzip layer of ``1`` lines took 37 s and 800 MiB)."""
        values: list[int] = []  # the count, then offset and length of each region
        pending = b""
        taken = 0
        while not values or len(values) < 1 + 2 * values[0]:
            if b"\n" not in pending:
                if taken >= MAX_HEADER_BYTES:
                    raise tarfile.HeaderError(f"the GNU sparse map of {next.name!r} is over the "
                                              f"{MAX_HEADER_BYTES}-byte limit")
                block = archive.fileobj.read(tarfile.BLOCKSIZE)  # type: ignore[attr-defined]
                if not block:
                    raise tarfile.HeaderError(f"the GNU sparse map of {next.name!r} is cut short")
                taken += len(block)
                pending += block
                continue
            line, pending = pending.split(b"\n", 1)
            values.append(int(line))
        next.offset_data = archive.fileobj.tell()  # type: ignore[attr-defined]
        next.sparse = list(zip(values[1::2], values[2::2]))  # type: ignore[assignment]

    def _apply_pax_info(self, pax_headers: Mapping[str, str], encoding: str, errors: str) -> None:
        """Apply PAX records as tarfile does, once their numbers are checked: tarfile takes
        a malformed one (``size=1e3``, ``uid=-``) for 0, so a member's data was read as
        more headers (entries no other reader sees) and its owner became root; Go's
        ``archive/tar`` (Docker, umoci, rkt) refuses the header. The rules are Go's:
        ``uid``, ``gid`` and ``size`` decimal integers, ``atime``, ``ctime`` and ``mtime``
        decimal seconds with an optional fraction (POSIX ``pax``, "pax Extended Header").
        An empty number, ``path``, ``linkpath``, ``uname`` or ``gname`` is left out, so the
        ustar header's value holds (POSIX: an empty value removes the record; Go skips it;
        tarfile took 0, or an empty name: the entry was lost, a link pointed nowhere).

        Raises:
            tarfile.HeaderError: naming the record and the entry.
        """
        records = {keyword: value for keyword, value in pax_headers.items()
                   if value or keyword not in _PAX_NUMBERS and keyword not in _PAX_NAMES}
        for keyword, value in records.items():
            rule = _PAX_NUMBERS.get(keyword)
            if rule is not None and not rule.fullmatch(value):
                raise tarfile.HeaderError(f"malformed PAX record {keyword}={value!r} in the header of "
                                          f"{records.get('path', self.name)!r}")
        super()._apply_pax_info(records, encoding, errors)  # type: ignore[misc]

    def _check_header_size(self) -> None:
        if self.size > MAX_HEADER_BYTES:
            raise tarfile.HeaderError(f"a {self.size}-byte extended header is over the {MAX_HEADER_BYTES}-byte limit")


_PAX_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_PAX_SECONDS = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?", re.ASCII)
_PAX_NAMES = frozenset({"path", "linkpath", "uname", "gname"})
"""The PAX records that replace a ustar header's text field (an empty one does not)."""
_PAX_NUMBERS = {"uid": _PAX_INTEGER, "gid": _PAX_INTEGER, "size": _PAX_INTEGER,
                "atime": _PAX_SECONDS, "ctime": _PAX_SECONDS, "mtime": _PAX_SECONDS}
"""The PAX records that hold numbers, and their form (Go's ``strconv.ParseInt`` and
``parsePAXTime``; Python's ``int`` and ``float`` also take ``1e3``, ``1_000``, ``nan``,
spaces and other scripts' digits)."""


def _malformed(member: tarfile.TarInfo, err: Exception) -> tarfile.HeaderError:
    return tarfile.HeaderError(f"malformed header for {member.name!r}: {err!r}")


_ZERO_BLOCK = bytes(tarfile.BLOCKSIZE)
HeaderFields = tuple[str, int, int, int, int, int, int, bytes, str, str, str, int, int, str]
"""name, mode, uid, gid, size, mtime, chksum, type, linkname, uname, gname, devmajor,
devminor, prefix: the fields of a ustar header."""
# mode, uid, gid, size, mtime, checksum, devmajor, devminor (ustar field offsets)
_NUMBER_FIELDS = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (148, 156), (329, 337), (337, 345))


def _decode(buf: bytes, encoding: str, errors: str) -> HeaderFields | None:
    """The fields of the usual ustar header (octal numbers, a checksum that matches
    unsigned, no old GNU sparse map), text decoded up to its first NUL; ``None`` for any
    other header. The definition of :func:`converters._tarheader.decode`."""
    if len(buf) != tarfile.BLOCKSIZE or buf[156:157] == tarfile.GNUTYPE_SPARSE or buf == _ZERO_BLOCK:
        return None
    numbers = [_octal(buf[start:end]) for start, end in _NUMBER_FIELDS]
    if None in numbers or numbers[5] != 256 + sum(buf) - sum(buf[148:156]):
        return None
    mode, uid, gid, size, mtime, chksum, devmajor, devminor = numbers
    return (_text(buf[0:100], encoding, errors), mode, uid, gid, size, mtime, chksum, buf[156:157],
            _text(buf[157:257], encoding, errors), _text(buf[265:297], encoding, errors),
            _text(buf[297:329], encoding, errors), devmajor, devminor, _text(buf[345:500], encoding, errors))


def _octal(field: bytes) -> int | None:
    """An octal header number as tarfile reads it, or ``None`` for what only tarfile
    decodes (base-256) or rejects."""
    if field[:1] in (b"\x80", b"\xff"):
        return None
    end = field.find(b"\0")
    if end != -1:
        field = field[:end]
    try:
        return int(field.strip() or b"0", 8)
    except ValueError:
        return None


def _text(field: bytes, encoding: str, errors: str) -> str:
    end = field.find(b"\0")
    return (field if end == -1 else field[:end]).decode(encoding, errors)


def _decode_usual(buf: bytes) -> HeaderFields | None:
    """:func:`_decode` for UTF-8 names (surrogate escapes), in C when the codec is built."""
    codec = native.tarheader
    return codec.decode(buf) if codec is not None else _decode(buf, "utf-8", "surrogateescape")


def open_tar(fileobj: BinaryIO) -> tarfile.TarFile:
    """Open a seekable tar for reading: names byte-exact, extended headers bounded."""
    return tarfile.open(fileobj=fileobj, mode="r:", encoding="utf-8", errors="surrogateescape",
                        tarinfo=BoundedTarInfo)


_PLAIN_TYPES = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE,
                          tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE))
"""Entry types whose header is the whole entry description (no extension header)."""
_DATA_TYPES = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE))
"""Entry types followed by ``size`` bytes of data (tarfile's ``isreg``, sparse aside)."""


def _read_members(layer: LayerTar) -> list[tarfile.TarInfo]:
    """Every entry of a layer tar, as :meth:`tarfile.TarFile.getmembers` lists them (the
    same headers, offsets and errors), then :func:`_check_end`.

    The usual entry (one ustar header of a plain type, see :func:`_decode`) is read here,
    in one pass; every other header (PAX and GNU extensions, sparse files, unknown types,
    the end of the archive, damage) is tarfile's, read from its offset. After a PAX global
    header, which applies to every entry after it, tarfile reads the rest.

    Raises:
        BadLayer: not a tar, data cut short, or damaged before its end.
    """
    f = layer.file
    size = f.seek(0, 2)
    if size == 0:
        return []
    members: list[tarfile.TarInfo] = []
    offset = 0
    tf: tarfile.TarFile | None = None
    try:
        f.seek(0)
        while True:
            buf = f.read(tarfile.BLOCKSIZE)
            fields = _decode_usual(buf)
            if fields is not None and fields[7] in _PLAIN_TYPES:
                member = BoundedTarInfo.from_fields(fields)
                BoundedTarInfo._check_size(member)  # a "-" read as a sign (the Python codec) as tarfile reads it
                if member.type == tarfile.DIRTYPE:
                    member.name = member.name.rstrip("/")  # tarfile strips again once the ustar prefix is on
                member.offset = offset
                member.offset_data = offset = offset + tarfile.BLOCKSIZE
                if member.type in _DATA_TYPES and member.size:
                    offset += -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                    if offset > size:
                        raise tarfile.ReadError("unexpected end of data")
                    f.seek(offset)
                members.append(member)
                continue
            f.seek(offset)
            if tf is None:
                tf = open_tar(f)  # reads its first entry from ``offset``
                found, tf.firstmember = tf.firstmember, None
            else:
                tf.offset = offset
                found = tf.next()
            if found is not None:
                members.append(found)
                if tf.pax_headers:  # a global header: tarfile applies it to every entry after it
                    members.extend(iter(tf.next, None))
                    found = None
            if found is None:
                end = tf.offset
                break
            offset = tf.offset
            if offset > size:
                raise tarfile.ReadError("unexpected end of data")
            f.seek(offset)
    except tarfile.TarError as err:
        raise BadLayer(layer.name, f"not a valid tar: {err}") from err
    _check_end(layer, end, members[-1].name if members else None)
    return members


def _check_end(layer: LayerTar, offset: int, last: str | None) -> None:
    """Refuse a layer whose entries stop at ``offset`` for any reason but the end of the
    file or the end-of-archive marker (a zero block, and nothing but zeros after it).

    tarfile ends its member list quietly at a malformed header once past the first (a bad
    checksum, a header cut short, the data of a symlink read as a header), and every entry
    after it would be lost without a word; Go's archive/tar, which Docker and umoci read
    layers with, fails there.

    Raises:
        BadLayer: naming the offset (bytes) and the last entry read.
    """
    layer.file.seek(offset)
    block = layer.file.read(tarfile.BLOCKSIZE)
    if not block:
        return
    if block == _ZERO_BLOCK:
        if not layer.file.read(tarfile.BLOCKSIZE).strip(b"\0"):
            return
        problem = "data after an end-of-archive block"
    else:
        problem = "a malformed tar header" if len(block) == tarfile.BLOCKSIZE else "a tar header cut short"
    after = f"after entry {last!r}" if last is not None else "before any entry"
    raise BadLayer(layer.name, f"{problem} at byte {offset}, {after}: the layer is damaged")


def _components(path: str) -> list[str]:
    """The components of a path or link target that name a step (``..`` included): those
    that are empty or ``.`` are dropped."""
    return [part for part in path.split("/") if part not in ("", ".")]


class _Dir:
    """A directory on the way of a symlink resolution, as a cell of a persistent stack.

    Attributes:
        node: the directory; ``None`` for a component taken lexically (missing, or not a
            directory): nothing is looked up below it, and ``..`` leaves it.
        up: the directory it is in; ``None`` for the root.

    A cell never changes, so where a resolution ends can be kept and taken up again
    in O(1), where a list of the directories would be copied (it can be 2,000 deep).
    """

    __slots__ = ("node", "up")

    def __init__(self, node: Node | None, up: _Dir | None) -> None:
        self.node = node
        self.up = up


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How resolving a symlink's target from the link's own directory ends.

    Attributes:
        hops: the links followed (the link itself not counted), up to the escape if
            ``escaped``; more than :data:`MAX_SYMLINK_HOPS` when the way has more, or
            is a loop (the kernel's ELOOP: nothing is reached, nothing escapes).
        escaped: whether a ``..`` climbed above the root, no absolute link followed yet.
        end: where the way ends; ``None`` when it escaped or has too many links.
        rerooted: whether an absolute link was followed by the end (or before the link).
    """

    hops: int
    escaped: bool = False
    end: _Dir | None = None
    rerooted: bool = False


_TOO_MANY_HOPS = _Outcome(MAX_SYMLINK_HOPS + 1)

_TOO_LONG_A_WAY = Node.directory(None)
"""What :meth:`RootfsTree._resolve` gives for a way past :data:`MAX_RESOLVE_LINK_CHARS`
(a node of no tree: only its identity counts)."""


@dataclass(slots=True)
class _Frame:
    """A symlink whose target :meth:`_LinkResolver._resolve` is walking.

    Attributes:
        key: the link, and whether the way was re-rooted when it reached the link.
        parts: the target's components; ``parts[next:]`` are still to walk.
        start: the walk's hop count when the target began.
    """

    key: tuple[Node, bool]
    parts: list[str]
    start: int
    next: int = 0


class _LinkResolver:
    """Resolves relative symlinks through a tree's own links, by the rules of
    :meth:`RootfsTree._check_symlinks`, walking each link's target at most twice.

    Following a link leads to the same place wherever the way comes from, as long as
    the way had (or had not) been re-rooted by an absolute link before: a way meets a
    link only in the directory that holds it, and a node has one place in the tree, so
    the directories above are always those of the link's path (after an absolute link
    ``..`` stays at the root instead of escaping, hence the second key). So the outcome of
    each (link, re-rooted) is kept, and following a link met before costs O(1): its hops
    are added to the count and its end is taken up. The tree must not change while a
    resolver is in use.

    Cost: all resolutions together walk each link's target at most twice, O(1) per
    component, so the time and memory are linear in the total length of the targets,
    plus O(1) per call.
    """

    def __init__(self, root: Node) -> None:
        self.root = _Dir(root, None)
        self._known: dict[tuple[Node, bool], _Outcome] = {}

    def escapes(self, link: Node, directory: _Dir) -> bool:
        """Whether the relative symlink ``link`` climbs above the root.

        Args:
            link: a relative symlink's node.
            directory: the cell of the directory holding ``link``, its path's cells
                above it down to :attr:`root`.
        """
        key = (link, False)
        if key not in self._known:
            self._resolve(link, directory)
        return self._known[key].escaped

    def _resolve(self, first: Node, directory: _Dir) -> None:
        """Walk ``first``'s target from ``directory``, and the targets of the links met
        on the way that have no outcome yet, and record the outcome of each.

        One component at a time, as the kernel does, with a stack of the links being
        walked (``frames``, the innermost last) instead of a queue of their targets'
        components. The hop count runs over the whole walk; a frame's own count is the
        links followed since it began (``hops - start``), and the frame goes past the
        hop limit when that count does (the outer frames first, as they began first).

        * A link is recorded as past the limit (:data:`_TOO_MANY_HOPS`) when its frame
          begins, until the frame ends: met again inside its own walk, the way is where
          it was when the frame began (same directory, same ``rerooted``) and would go
          round for ever, as a loop; the kernel gives ELOOP. A frame that goes past the
          limit keeps that outcome.
        * The walk goes on while the innermost frame is within its limit, even once
          ``first`` is past it: every link whose walk began gets its final outcome, so
          it is never walked again (a chain of long links that thousands of links lead
          into would be walked again for each of them otherwise).
        * A ``..`` above the root, the way not re-rooted, is an escape for every frame
          still within its limit, after its own count of hops; the walk stops there.
        """
        known = self._known
        frames: list[_Frame] = []
        within = 0  # frames[:within] went past the hop limit (the outer ones)
        hops = 0  # links followed since first's target began
        current, rerooted = directory, False
        link: Node | None = first
        while True:
            if link is not None:  # begin walking link's target from current
                assert link.inode is not None
                target = link.inode.header.linkname
                key = (link, rerooted)
                known[key] = _TOO_MANY_HOPS  # until the frame ends: see above
                if target.startswith("/"):
                    current, rerooted = self.root, True
                frames.append(_Frame(key, _components(target), hops))
                link = None
            frame = frames[-1]  # within its limit, as the loop goes on only then
            if frame.next == len(frame.parts):  # the target is walked
                known[frame.key] = _Outcome(hops - frame.start, end=current, rerooted=rerooted)
                frames.pop()
                if within == len(frames):
                    return
                continue
            part = frame.parts[frame.next]
            frame.next += 1
            if part == "..":
                if current.up is not None:
                    current = current.up
                    continue
                if rerooted:
                    continue  # the root of a re-rooted way is its own parent
            else:
                node = current.node
                child = node.children.get(part) if node is not None and node.children is not None else None
                if child is None or child.inode is None or not child.inode.header.issym():
                    current = _Dir(child if child is not None and child.children is not None else None, current)
                    continue
                # A link: one hop, and those of its own walk when it is known.
                outcome = known.get((child, rerooted))
                hops += 1 + (outcome.hops if outcome is not None else 0)
                while within < len(frames) and hops - frames[within].start > MAX_SYMLINK_HOPS:
                    within += 1
                if within == len(frames):
                    return  # every frame went past the limit, before any escape
                if outcome is None:
                    link = child
                    continue
                if not outcome.escaped:
                    assert outcome.end is not None
                    current, rerooted = outcome.end, outcome.rerooted
                    continue
            # Above the root: an escape for every frame still within its limit.
            for frame in frames[within:]:
                known[frame.key] = _Outcome(hops - frame.start, escaped=True)
            return


class RootfsTree:
    """The merged filesystem tree of an image's layers.

    Build it with :meth:`from_layers` (or layer by layer with :meth:`apply`); read small
    files with :meth:`read_file`; stream it into a tar with :meth:`write`, whole or one
    layer's share of it.
    """

    def __init__(self, layers: Sequence[LayerTar]) -> None:
        self._layers = list(layers)
        self.root = Node.directory(None)
        self._hidden: dict[Path, Inode] = {}  # this layer's AUFS hard-link targets
        self.applied = 0
        """How many layers (from the base) the tree holds."""

    @classmethod
    def from_layers(cls, layers: Sequence[LayerTar]) -> RootfsTree:
        """Apply ``layers`` (base first) to an empty tree.

        Args:
            layers: the uncompressed layer tars, base layer first. They must stay open
                until :meth:`write` has run.

        Raises:
            BadLayer: a layer is not a tar, or has sparse or unsupported members.
            UnsafeEntry: an entry escapes the root or is inconsistent.
        """
        tree = cls(layers)
        for _ in layers:
            tree.apply(check=False)
        tree._check_symlinks()
        return tree

    def apply(self, check: bool = True) -> None:
        """Apply the next layer (the base first) to the tree.

        Args:
            check: refuse symlinks that escape through the tree as it now is (see
                :meth:`from_layers`, which checks once, at the end).

        Raises:
            BadLayer, UnsafeEntry: as :meth:`from_layers`.
        """
        index = self.applied
        self._hidden = {}
        self._apply(index, self._layers[index])
        self._hidden = {}
        self.applied = index + 1
        if check:
            self._check_symlinks()

    def _check_symlinks(self) -> None:
        """Refuse a relative symlink whose target, resolved through the finished tree's
        own links (as the kernel would resolve it once extracted), climbs above the root:
        ``a/up -> ..`` is fine, ``a/out -> up/..`` is not (``up`` is the root). Absolute
        targets are re-rooted at run time and never escape (public case 13), nor do the
        ``..`` steps after one; components that are missing or not directories are taken
        lexically; a way of more than :data:`MAX_SYMLINK_HOPS` links (a loop) reaches
        nothing and does not escape.

        Cost: linear in the number of entries plus the total length of names and link
        targets: each link's target is resolved at most twice per check (see
        :class:`_LinkResolver`).

        Raises:
            UnsafeEntry: the link, and the layer that wrote it.
        """
        links = _LinkResolver(self.root)
        for path, node in self.walk():
            inode = node.inode
            if inode is None or not inode.header.issym() or inode.header.linkname.startswith("/"):
                continue
            directory = links.root
            for part in path.split("/")[:-1]:
                assert directory.node is not None and directory.node.children is not None
                directory = _Dir(directory.node.children[part], directory)
            if links.escapes(node, directory):
                raise UnsafeEntry(self._layers[inode.layer].name, path,
                                  f"symlink target {inode.header.linkname!r} points outside the root "
                                  "through the image's own symlinks")

    # -- building -------------------------------------------------------------------

    def _apply(self, index: int, layer: LayerTar) -> None:
        opaque: list[Path] = []
        whiteouts: list[Path] = []
        entries: list[tuple[Path, tarfile.TarInfo]] = []
        for member in _read_members(layer):
            name = member.name
            if _too_long(name) or _too_long(member.linkname):
                raise UnsafeEntry(layer.name, name[:200], f"name or link target longer than {MAX_NAME_BYTES} bytes")
            if "\0" in name or "\0" in member.linkname:
                # Only a PAX record can carry one; a path ends at it for the kernel and for
                # every tar header written after, so the checks below would check another path.
                raise UnsafeEntry(layer.name, name, "name or link target holds a NUL byte")
            if (problem := _unwritable(member)) is not None:
                raise UnsafeEntry(layer.name, name, problem)
            try:
                path = clean_member_name(name)
            except EscapingPath as err:
                raise UnsafeEntry(layer.name, name, str(err)) from None
            if WHITEOUT_PREFIX not in name:  # (every component is a substring of the name)
                entries.append((path, member))
                continue
            base = path[-1] if path else ""
            hidden = next((part for part in path[:-1] if part.startswith(WHITEOUT_PREFIX)), None)
            if hidden is not None:
                # Below a whiteout-named directory: never emitted. AUFS keeps the targets
                # of hard links there (.wh..wh.plnk); remember them so links resolve.
                if hidden.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX) and not member.isdir():
                    self._hidden[path] = Inode(member, index)
                continue
            if base == OPAQUE_MARKER:
                opaque.append(path[:-1])
            elif base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                continue  # AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): never emitted
            elif base.startswith(WHITEOUT_PREFIX):
                target = base[len(WHITEOUT_PREFIX):]
                if target in ("", ".", ".."):
                    raise UnsafeEntry(layer.name, member.name, "whiteout names no file")
                whiteouts.append(path[:-1] + (target,))
            else:
                entries.append((path, member))
        replaced: dict[Node, bool] = {}
        if opaque or whiteouts:  # what this layer makes anew or removes (see _whiteout_dir)
            made = {**{path: False for path in whiteouts}, **{path: member.isdir() for path, member in entries}}
            # Keyed by the node now at each path, so that a resolution checks a step in O(1)
            # instead of building its path (O(depth) a step): the same test, as whiteouts
            # only remove nodes, so a node reached later is still the one at its path.
            replaced = {node: made_dir for path, made_dir in made.items()
                        if (node := self._lookup(path)) is not None}
            # An entry below a link or a file makes that name a directory anew (see
            # _parent_dir): nothing through the old link is this layer's to remove.
            for path, _ in entries:
                node = self.root
                for part in path[:-1]:
                    assert node.children is not None
                    child = node.children.get(part)
                    if child is None:
                        break
                    if child.children is None:
                        replaced.setdefault(child, True)
                        break
                    node = child
        for path in opaque:
            node = self._whiteout_dir(path, replaced, layer.name, "/".join((*path, OPAQUE_MARKER)))
            if node is not None and node.children is not None:
                node.children.clear()
        for path in whiteouts:
            parent = self._whiteout_dir(path[:-1], replaced, layer.name,
                                        "/".join((*path[:-1], WHITEOUT_PREFIX + path[-1])))
            if parent is not None and parent.children is not None:
                parent.children.pop(path[-1], None)
        for path, member in entries:
            self._put(index, layer.name, path, member)

    def _whiteout_dir(self, path: Path, replaced: Mapping[Node, bool], layer: str, entry: str) -> Node | None:
        """The directory a whiteout or opaque marker at ``path/`` applies to: ``path``
        followed through symbolic links in the tree, as umoci follows them (``l -> real``:
        ``l/.wh.x`` removes ``real/x``), or ``None`` when something on the way is replaced
        or removed by this layer (``replaced``: the nodes at its own entries' paths, each
        with whether the entry is a directory, at what it whites out, and the links and
        files its entries' parents make directories) other than a
        directory by a directory, which merge. umoci applies a layer in stream order, and overlayfs writes a
        directory before what it whites out below it: a directory made over a link, or
        anything made over a directory, has no lower content left to remove, and following
        the old link would remove its target's (``var/run -> ../run`` replaced by ``var/run/`` and ``var/run/.wh..wh..opq``,
        overlayfs's record of ``rm /var/run && mkdir /var/run``, must leave ``/run`` be).

        Raises:
            UnsafeEntry: naming ``entry``, the whiteout or marker of ``layer``, when the way
                has more than :data:`MAX_RESOLVE_LINK_CHARS` characters of link targets: only
                a crafted image has one, and neither applying nor ignoring it would be sure
                to give what an extractor would."""
        node = self._resolve("/".join(path), replaced=replaced)
        if node is _TOO_LONG_A_WAY:
            raise UnsafeEntry(layer, entry, f"reached through more than {MAX_RESOLVE_LINK_CHARS} characters of "
                              "symlink targets")
        return node

    def _lookup(self, path: Path) -> Node | None:
        """The node at ``path`` without following symlinks, or ``None``."""
        node = self.root
        for part in path:
            if node.children is None:
                return None
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def _parent_dir(self, path: Path, index: int) -> Node:
        """The directory that holds ``path``, turning missing or non-directory
        ancestors into implicit directories (made by layer ``index``)."""
        node = self.root
        for part in path[:-1]:
            assert node.children is not None
            child = node.children.get(part)
            if child is None or child.children is None:
                child = Node.directory(None, index)
                node.children[part] = child
            node = child
        return node

    def _put(self, index: int, layer: str, path: Path, member: tarfile.TarInfo) -> None:
        kind = member.type
        if not path:
            if kind != tarfile.DIRTYPE:
                raise UnsafeEntry(layer, member.name, "refusing to change the type of the root directory")
            return  # the root's own metadata is fixed by the ACI writer
        if member.sparse is not None:
            raise BadLayer(layer, f"entry {member.name!r} is a sparse file, which is not supported")
        parent = self._parent_dir(path, index)
        assert parent.children is not None
        name = path[-1]
        if kind == tarfile.DIRTYPE:
            existing = parent.children.get(name)
            if existing is not None and existing.children is not None:
                existing.header = member
                existing.layer = index
            else:
                parent.children[name] = Node.directory(member, index)
            return
        if kind == tarfile.LNKTYPE:
            parent.children[name] = Node(inode=self._link_target(layer, member), layer=index)
            return
        if kind not in _SUPPORTED_TYPES:
            raise UnsafeEntry(layer, member.name, f"unsupported tar entry type {kind!r}")
        if kind in _DEVICE_TYPES and not (0 <= member.devmajor <= MAX_DEVICE_NUMBER
                                          and 0 <= member.devminor <= MAX_DEVICE_NUMBER):
            raise UnsafeEntry(layer, member.name, f"device number {member.devmajor},{member.devminor} is out of "
                              f"range (0-{MAX_DEVICE_NUMBER}, what a tar header holds)")
        if kind == tarfile.SYMTYPE and is_escaping_link(path, member.linkname):
            raise UnsafeEntry(layer, member.name,
                              f"symlink target {member.linkname!r} points outside the root")
        parent.children[name] = Node(inode=Inode(member, index), layer=index)

    def _link_target(self, layer: str, member: tarfile.TarInfo) -> Inode:
        try:
            target_path = clean_member_name(member.linkname)
        except EscapingPath as err:
            raise UnsafeEntry(layer, member.name, f"hard link target {member.linkname!r}: {err}") from None
        if target_path in self._hidden:
            return self._hidden[target_path]
        target = self._lookup(target_path)
        if target is None or target.inode is None:
            what = "a directory" if target is not None else "missing"
            raise UnsafeEntry(layer, member.name, f"hard link target {member.linkname!r} is {what}")
        return target.inode

    def add_stdio_links(self) -> list[str]:
        """Add ``/dev/stdin|stdout|stderr|fd`` links the image lacks.

        Returns:
            warnings (when ``/dev`` is not a directory, nothing is added).
        """
        dev = self._lookup(("dev",))
        if dev is not None and dev.children is None:
            return ["/dev is not a directory in the image; the stdio links are not added"]
        if dev is None:
            dev = Node.directory(None)
            assert self.root.children is not None
            self.root.children["dev"] = dev
        assert dev.children is not None
        for name, target in STDIO_LINKS:
            if name not in dev.children:
                header = fixed_header(f"dev/{name}", tarfile.SYMTYPE, 0o777)
                header.linkname = target
                dev.children[name] = Node(inode=Inode(header, -1), layer=self.applied - 1)
        return []

    # -- reading --------------------------------------------------------------------

    def resolve(self, name: str) -> Node | None:
        """Find a path, following symlinks inside the tree (absolute targets re-rooted,
        ``..`` clamped at the root), at most :data:`MAX_SYMLINK_HOPS` links with at most
        :data:`MAX_RESOLVE_LINK_CHARS` characters of targets together; ``None`` when it is
        not there, or when the way has more links (a loop for the kernel) or longer targets.

        Cost: O(length of ``name`` + :data:`MAX_RESOLVE_LINK_CHARS`).
        """
        node = self._resolve(name)
        return None if node is _TOO_LONG_A_WAY else node

    def _resolve(self, name: str, replaced: Mapping[Node, bool] | None = None) -> Node | None:
        """:meth:`resolve`, but a way with more than :data:`MAX_RESOLVE_LINK_CHARS`
        characters of link targets gives :data:`_TOO_LONG_A_WAY`, and a way that passes a
        node in ``replaced`` (see :meth:`_whiteout_dir`) that is not a directory replaced by
        a directory gives ``None``."""
        pending = deque(_components(name))
        stack: list[Node] = [self.root]
        hops = 0
        link_chars = 0
        while pending:
            part = pending.popleft()
            if part == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            current = stack[-1]
            if current.children is None:
                return None
            child = current.children.get(part)
            if child is None:
                return None
            if replaced and (made_dir := replaced.get(child)) is not None:
                if not (made_dir and child.children is not None):
                    return None
            if child.inode is not None and child.inode.header.issym():
                target = child.inode.header.linkname
                hops += 1
                link_chars += len(target)  # counted before the target is split
                if hops > MAX_SYMLINK_HOPS:
                    return None
                if link_chars > MAX_RESOLVE_LINK_CHARS:
                    return _TOO_LONG_A_WAY
                if target.startswith("/"):
                    stack = [self.root]
                pending.extendleft(reversed(_components(target)))
                continue
            stack.append(child)
        return stack[-1]

    def read_file(self, name: str, limit: int) -> bytes | None:
        """The content of a regular file, following symlinks inside the tree.

        Args:
            name: an absolute or relative path in the image.
            limit: the largest size read, in bytes; a larger file gives ``None``.

        Returns:
            the bytes, or ``None`` when the path is missing, not a regular file or too big.
        """
        node = self.resolve(name)
        if node is None or node.inode is None or not node.inode.header.isreg():
            return None
        header = node.inode.header
        if header.size > limit:
            return None
        f = self._layers[node.inode.layer].file
        f.seek(header.offset_data)
        return f.read(header.size)

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Every named node, depth first, children sorted by name (parents first)."""
        assert self.root.children is not None
        parts: list[str] = []
        stack = [iter(sorted(self.root.children.items()))]
        while stack:
            for name, node in stack[-1]:
                parts.append(name)
                yield "/".join(parts), node
                if node.children is not None:
                    stack.append(iter(sorted(node.children.items())))
                    break
                parts.pop()
            else:
                stack.pop()
                if parts:
                    parts.pop()

    # -- writing --------------------------------------------------------------------

    def write(self, out: TarSink, prefix: str = "rootfs", layer: int | None = None) -> int:
        """Write every entry into ``out`` under ``prefix/``, or one layer's share.

        Args:
            out: an open tar writer (PAX format): a ``tarfile.TarFile`` or a
                :class:`converters.tarwriter.TarWriter`.
            prefix: the directory the tree goes under (``rootfs`` in an ACI).
            layer: write only what layer ``layer`` set (see :meth:`layer_paths`), for
                an unsquashed image; ``None``: the whole tree.

        Returns:
            the number of entries written.

        Raises:
            BadLayer: a layer's data is shorter than its header says.
        """
        selected = self.layer_paths(layer) if layer is not None else None
        first_name: dict[int, str] = {}
        count = 0
        for path, node in self.walk():
            if selected is not None and path not in selected:
                continue
            name = f"{prefix}/{path}"
            if node.children is not None:
                header = node.header
                if header is None and selected is not None:
                    # made by this layer without an entry of its own (it replaced a link, a
                    # file or a deleted directory): named here, so the chain renders it
                    header = fixed_header(path, tarfile.DIRTYPE, 0o755)
                if header is not None:
                    out.addfile(_copy_header(header, name))
                    count += 1
                continue
            inode = node.inode
            assert inode is not None
            key = id(inode)
            if key in first_name:
                link = _copy_header(inode.header, name)
                link.type = tarfile.LNKTYPE
                link.linkname = first_name[key]
                link.size = 0
                out.addfile(link)
            else:
                first_name[key] = name
                header = _copy_header(inode.header, name)
                if header.isreg():
                    source = self._layers[inode.layer]
                    source.file.seek(inode.header.offset_data)
                    try:
                        out.addfile(header, source.file)
                    except OSError as err:
                        raise BadLayer(source.name, f"entry {inode.header.name!r}: {err}") from err
                else:
                    out.addfile(header)
            count += 1
        return count

    def layer_paths(self, layer: int) -> set[str]:
        """The paths a layer's own ACI must hold so that, rendered over the ACIs of the
        layers below it (and trimmed by its ``pathWhitelist``), it gives this tree:

        * every name the layer set (files, links, directories whose header it wrote, and
          directories it made implicitly, which :meth:`write` then names with mode 0755);
        * every other name of an inode one of those names shares (a hard link made by
          this layer to a lower file brings that file along, so the link has its target
          in the same archive and the rendered names share one inode, as here);
        * the directories above those, that carry a header.
        """
        selected: set[str] = set()
        groups: dict[int, list[str]] = {}
        touched: set[int] = set()
        for path, node in self.walk():
            if node.inode is not None:
                groups.setdefault(id(node.inode), []).append(path)
                if node.layer == layer:
                    touched.add(id(node.inode))
            elif node.layer == layer:
                selected.add(path)
        for key in touched:
            selected.update(groups[key])
        for path in list(selected):
            parts = path.split("/")[:-1]
            while parts:
                parent = "/".join(parts)
                if parent in selected:
                    break
                node = self._lookup(tuple(parts))
                if node is not None and node.header is not None:
                    selected.add(parent)
                parts.pop()
        return selected

    def paths(self) -> set[str]:
        """Every path in the tree (relative, ``/``-separated), implicit directories too."""
        return {path for path, _ in self.walk()}


_INT64_END = 1 << 63
_INT64 = range(-_INT64_END, _INT64_END)


def _unwritable(member: tarfile.TarInfo) -> str | None:
    """Why the ACI could not carry ``member``'s metadata as the layer gave it (PAX records
    and GNU base-256 fields can say anything): a uid or gid outside 0 to
    :data:`MAX_OWNER_ID` (no extractor could give a file that owner: GNU tar refuses the
    ACI, Docker and umoci cut the number to 32 bits), an mtime outside the 64-bit range
    Go's archive/tar (actool, rkt) reads or that is not a number (``nan``, ``1e400``), or
    an xattr name that is not UTF-8 (a PAX keyword must be); ``None`` when it can."""
    uid, gid, mtime = member.uid, member.gid, member.mtime
    if not member.pax_headers and type(mtime) is int and 0 <= mtime < _INT64_END \
            and 0 <= uid <= MAX_OWNER_ID and 0 <= gid <= MAX_OWNER_ID:
        return None  # the usual header: small numbers, no xattrs
    for field, value in (("uid", uid), ("gid", gid)):
        if not 0 <= value <= MAX_OWNER_ID:
            return f"{field} {value} is out of range (0-{MAX_OWNER_ID}, what a Linux file can be owned by)"
    mtime = member.mtime
    if not (isinstance(mtime, int) or math.isfinite(mtime)) or int(mtime) not in _INT64:
        return f"mtime {mtime} is out of range (64-bit seconds)"
    for key in member.pax_headers:
        if key.startswith(_XATTR_PREFIX):
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                return f"xattr name {key[len(_XATTR_PREFIX):]!r} is not UTF-8"
    return None


def _too_long(name: str) -> bool:
    return len(name) > MAX_NAME_BYTES // 4 and len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES


def _copy_header(src: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    """A fresh header for ``name`` carrying what the layer said about the object."""
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.REGTYPE if src.type in (tarfile.AREGTYPE, tarfile.CONTTYPE) else src.type
    ti.mode = src.mode
    ti.uid, ti.gid = src.uid, src.gid
    ti.uname, ti.gname = src.uname, src.gname
    ti.mtime = src.mtime
    ti.size = src.size if ti.type == tarfile.REGTYPE else 0
    ti.linkname = src.linkname if ti.type == tarfile.SYMTYPE else ""
    ti.devmajor, ti.devminor = src.devmajor, src.devminor
    ti.pax_headers = {k: v for k, v in src.pax_headers.items() if k.startswith(_XATTR_PREFIX)}
    exact = src.pax_headers.get("mtime")
    if exact is not None and pax_time_ns(exact) is not None:
        ti.pax_headers["mtime"] = exact  # the float ``mtime`` lost its last nanosecond digits
    return ti


def fixed_header(name: str, type_: bytes, mode: int) -> tarfile.TarInfo:
    """A header for an entry we create ourselves: uid/gid 0, no owner names, mtime 0."""
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.mode = mode
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mtime = 0
    return ti
