"""Hand-built layer tars and OCI image layouts for the layer and squash tests.

The inputs built here stand for hostile or minimal layers that no real tool writes
(``../shared/cases/public-cases.md``, parts SQ and TAR): whiteouts in odd stream
orders, hard links with no parent directories, names such as ``../x``, ``/etc/passwd``
or ``.``, sparse members, media types that lie about the bytes. Real images come from
``fixtures/builders.py`` (umoci, skopeo); this module only uses Python's ``tarfile``,
the compressors and ``json``, never the project's own tar or ACI writer, so a bug
there cannot hide in the inputs.

A layer is a list of :class:`Entry` (see the constructors :func:`dir_`, :func:`file`,
:func:`symlink`, :func:`hardlink`, :func:`whiteout`, :func:`opaque`, :func:`chardev`,
:func:`blockdev`, :func:`fifo`, :func:`raw`); :func:`tar_bytes` turns it into a tar in
the format asked for (USTAR, GNU or PAX); :func:`write_oci_layout` stores layers as an
OCI image layout (``oci-layout``, ``index.json`` with a ref name, ``blobs/sha256/...``)
with the compression and the media type of each layer chosen independently.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import platform
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

USTAR = tarfile.USTAR_FORMAT
GNU = tarfile.GNU_FORMAT
PAX = tarfile.PAX_FORMAT

BLOCK = 512
ENCODING = "utf-8"
ERRORS = "surrogateescape"
"""Names are str; bytes that are not UTF-8 travel as surrogate escapes (as tarfile reads them)."""

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPES = {
    "plain": OCI_LAYER,
    "gzip": OCI_LAYER + "+gzip",
    "zstd": OCI_LAYER + "+zstd",
    "bzip2": OCI_LAYER + "+bzip2",  # no registered type exists; docker2aci decides by the bytes
    "xz": OCI_LAYER + "+xz",
}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

EMPTY_TAR_GZIP = bytes([
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x09, 0x6e, 0x88, 0x00, 0xff, 0x62, 0x18, 0x05, 0xa3, 0x60, 0x14,
    0x8c, 0x58, 0x00, 0x08, 0x00, 0x00, 0xff, 0xff, 0x2e, 0xaf, 0xb5, 0xef, 0x00, 0x04, 0x00, 0x00,
])
"""The 32-byte gzipped empty tar that schema 1 uses for metadata-only steps (public case 18)."""
EMPTY_TAR_GZIP_DIGEST = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
EMPTY_TAR_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
"""sha256 of 1024 zero bytes (what :data:`EMPTY_TAR_GZIP` decompresses to)."""


def _text(value: str | bytes) -> str:
    return value.decode(ENCODING, ERRORS) if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Entry:
    """One tar member, described compactly.

    Attributes:
        name: the member name (``bytes`` for names that are not UTF-8).
        type: the tar type flag (``tarfile.REGTYPE`` ...).
        data: the content of a regular file.
        linkname: symlink or hard-link target.
        mode, uid, gid, uname, gname, mtime, devmajor, devminor: header fields.
        pax: extra PAX records (``SCHILY.xattr.user.x``...); written only in PAX format.
        raw_name: when set, these exact bytes replace the header's name field after
            ``tarfile`` built it (``.`` as a directory, which ``tarfile`` would write
            as ``./``); USTAR/GNU headers only, at most 100 bytes.
    """

    name: str | bytes
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str | bytes = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mtime: int = 0
    devmajor: int = 0
    devminor: int = 0
    pax: Mapping[str, str] = field(default_factory=dict)
    raw_name: bytes | None = None

    def tarinfo(self) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(_text(self.name))
        ti.type = self.type
        ti.size = len(self.data) if self.type in (tarfile.REGTYPE, tarfile.AREGTYPE,
                                                  tarfile.GNUTYPE_SPARSE) else 0
        ti.linkname = _text(self.linkname)
        ti.mode = self.mode
        ti.uid, ti.gid = self.uid, self.gid
        ti.uname, ti.gname = self.uname, self.gname
        ti.mtime = self.mtime
        ti.devmajor, ti.devminor = self.devmajor, self.devminor
        ti.pax_headers = dict(self.pax)
        return ti


# ---------------------------------------------------------------- entry constructors


def dir_(name: str | bytes, mode: int = 0o755, **kw: Any) -> Entry:
    """A directory entry."""
    return Entry(name, tarfile.DIRTYPE, mode=mode, **kw)


def file(name: str | bytes, data: bytes | str = b"", mode: int = 0o644, **kw: Any) -> Entry:
    """A regular file with ``data``."""
    return Entry(name, tarfile.REGTYPE, data.encode() if isinstance(data, str) else data, mode=mode, **kw)


def symlink(name: str | bytes, target: str | bytes, **kw: Any) -> Entry:
    """A symbolic link (mode 0777)."""
    return Entry(name, tarfile.SYMTYPE, linkname=target, mode=kw.pop("mode", 0o777), **kw)


def hardlink(name: str | bytes, target: str | bytes, **kw: Any) -> Entry:
    """A hard link to the member named ``target``."""
    return Entry(name, tarfile.LNKTYPE, linkname=target, **kw)


def whiteout(path: str) -> Entry:
    """The whiteout that deletes ``path``: an empty file ``<dir>/.wh.<base>``."""
    head, _, base = path.rstrip("/").rpartition("/")
    return file(f"{head}/.wh.{base}" if head else f".wh.{base}")


def opaque(directory: str) -> Entry:
    """The opaque marker ``<directory>/.wh..wh..opq``."""
    return file(f"{directory.rstrip('/')}/.wh..wh..opq")


def chardev(name: str, major: int, minor: int, mode: int = 0o600, **kw: Any) -> Entry:
    """A character device node."""
    return Entry(name, tarfile.CHRTYPE, mode=mode, devmajor=major, devminor=minor, **kw)


def blockdev(name: str, major: int, minor: int, mode: int = 0o600, **kw: Any) -> Entry:
    """A block device node."""
    return Entry(name, tarfile.BLKTYPE, mode=mode, devmajor=major, devminor=minor, **kw)


def fifo(name: str, mode: int = 0o644, **kw: Any) -> Entry:
    """A named pipe."""
    return Entry(name, tarfile.FIFOTYPE, mode=mode, **kw)


def raw(name: bytes, type: bytes = tarfile.REGTYPE, data: bytes = b"", **kw: Any) -> Entry:
    """A member whose name field holds exactly ``name`` (``.``, ``./``, ``/``, ``../x``)."""
    return Entry(name.decode(ENCODING, ERRORS), type, data, raw_name=name, **kw)


def xattrs(**values: str) -> dict[str, str]:
    """PAX records for extended attributes: ``xattrs(user_x="v")`` → ``SCHILY.xattr.user.x``."""
    return {"SCHILY.xattr." + k.replace("_", ".", 1): v for k, v in values.items()}


# ---------------------------------------------------------------- tar bytes


def _patch_name(header: bytes, name: bytes) -> bytes:
    """Replace the name field of the last 512-byte block and fix its checksum."""
    if len(name) > 100:
        raise ValueError("a raw name must fit the 100-byte name field")
    block = bytearray(header[-BLOCK:])
    block[0:100] = name.ljust(100, b"\0")
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\0" % sum(block)
    return header[:-BLOCK] + bytes(block)


def member_bytes(entry: Entry, format: int = PAX) -> bytes:
    """One member: its header block(s) and its data padded to whole blocks."""
    header = entry.tarinfo().tobuf(format, ENCODING, ERRORS)
    if entry.raw_name is not None:
        if format == PAX and len(header) > BLOCK:
            raise ValueError("raw names need a single-block header (use USTAR or GNU)")
        header = _patch_name(header, entry.raw_name)
    data = entry.data
    return header + data + bytes(-len(data) % BLOCK)


def tar_bytes(entries: Sequence[Entry], format: int = PAX, *, end: bool = True) -> bytes:
    """A tar of ``entries`` in stream order, in ``format``, with the two zero end blocks
    unless ``end`` is false."""
    body = b"".join(member_bytes(e, format) for e in entries)
    return body + (bytes(2 * BLOCK) if end else b"")


# ---------------------------------------------------------------- OCI image layout


def compress(data: bytes, compression: str) -> bytes:
    """``data`` compressed as ``plain``, ``gzip`` (mtime 0), ``zstd``, ``bzip2`` or ``xz``."""
    if compression == "plain":
        return data
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if compression == "bzip2":
        return bz2.compress(data)
    if compression == "xz":
        return lzma.compress(data)
    raise ValueError(f"unknown compression {compression!r}")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layer:
    """One layer of a hand-built image.

    Attributes:
        tar: the uncompressed layer tar.
        compression: how the stored blob is compressed (see :func:`compress`).
        media_type: the declared media type; default the type matching ``compression``
            (set it to something else to test a lying media type).
        blob: stored bytes instead of ``compress(tar)`` (random bytes, a prebuilt gzip).
        diff_id: the config's diff ID instead of the sha256 of ``tar``.
    """

    tar: bytes
    compression: str = "gzip"
    media_type: str | None = None
    blob: bytes | None = None
    diff_id: str | None = None

    def stored(self) -> bytes:
        return self.blob if self.blob is not None else compress(self.tar, self.compression)


def goarch() -> str:
    """The host's architecture as Go names it (so converted ACIs get no platform suffix)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "i386": "386", "i686": "386", "armv7l": "arm"}.get(machine, machine)


@dataclass(frozen=True)
class Layout:
    """What :func:`write_oci_layout` wrote.

    Attributes:
        path: the layout directory.
        manifest_digest, config_digest: ``sha256:<hex>``.
        layer_digests: the stored layer blobs' digests, base first.
    """

    path: Path
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]

    def blob(self, digest: str) -> Path:
        """The file of a blob (which tests may overwrite or delete)."""
        algorithm, _, hexpart = digest.partition(":")
        return self.path / "blobs" / algorithm / hexpart


def write_oci_layout(path: Path, layers: Sequence[Layer], *, ref_name: str | None = "latest",
                     config: Mapping[str, Any] | None = None) -> Layout:
    """Write an OCI image layout holding one image.

    Args:
        path: the layout directory (created).
        layers: base layer first.
        ref_name: the ``org.opencontainers.image.ref.name`` annotation of the index
            entry (``None`` for none).
        config: keys merged into the image config (``{"config": {"Cmd": [...]}}``);
            default os ``linux``, the host's architecture, diff IDs from ``layers``.

    Returns:
        the digests written.
    """
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
        return digest

    descriptors = []
    for layer in layers:
        stored = layer.stored()
        descriptors.append({
            "mediaType": layer.media_type or MEDIA_TYPES[layer.compression],
            "digest": put(stored),
            "size": len(stored),
        })
    doc: dict[str, Any] = {
        "architecture": goarch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers",
                   "diff_ids": [layer.diff_id or sha256(layer.tar) for layer in layers]},
    }
    doc.update(config or {})
    config_bytes = json.dumps(doc, sort_keys=True).encode()
    config_digest = put(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": descriptors,
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = put(manifest_bytes)
    entry: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest_bytes)}
    if ref_name is not None:
        entry["annotations"] = {REF_NAME: ref_name}
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                 "manifests": [entry]}))
    return Layout(path, manifest_digest, config_digest, tuple(d["digest"] for d in descriptors))


def read_tar(data: bytes) -> list[tarfile.TarInfo]:
    """The members of a tar (names with surrogate escapes for non-UTF-8 bytes)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding=ENCODING, errors=ERRORS) as tf:
        return tf.getmembers()
