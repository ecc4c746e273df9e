"""Byte-level builders for the hostile inputs of ``test_hostile.py``.

Only Python's ``tarfile``, ``gzip``, ``hashlib`` and ``json`` are used (never the
project's own readers or writers), so a bug in the converter cannot hide in the inputs.
Every builder is deterministic (mtime 0, gzip mtime 0).

* :func:`member` / :func:`tar` build tars member by member (any type, any name,
  any link target, any PAX record);
* :func:`oci_layout` writes an OCI image layout (``index.json`` → manifest → config and
  layers), with hooks to corrupt any part of it;
* :func:`docker_save` writes a ``docker save`` archive (``manifest.json`` + config +
  ``<id>/layer.tar``) with extra or replacing members.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerbuild import goarch

ENCODING = "utf-8"
ERRORS = "surrogateescape"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nweb:x:101:102::/home/web:/bin/sh\n"


def sha256(data: bytes) -> str:
    """``<64 hex>`` of ``data``."""
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------ tars


@dataclass(frozen=True)
class M:
    """One tar member.

    Attributes:
        name: the member name (``bytes`` for names that are not UTF-8).
        type: tar type flag.
        data: content of a regular file.
        linkname: symlink or hard-link target.
        pax: extra PAX records.
        mode: permission bits.
    """

    name: str | bytes
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str | bytes = ""
    pax: Mapping[str, str] = field(default_factory=dict)
    mode: int = 0o644
    devmajor: int = 0
    devminor: int = 0

    def header(self, fmt: int) -> bytes:
        def text(v: str | bytes) -> str:
            return v.decode(ENCODING, ERRORS) if isinstance(v, bytes) else v

        ti = tarfile.TarInfo(text(self.name))
        ti.type = self.type
        ti.size = len(self.data) if self.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
        ti.linkname = text(self.linkname)
        ti.mode = self.mode
        ti.mtime = 0
        ti.devmajor, ti.devminor = self.devmajor, self.devminor
        ti.pax_headers = dict(self.pax)
        return ti.tobuf(fmt, ENCODING, ERRORS)


def file(name: str | bytes, data: bytes | str = b"", **kw: Any) -> M:
    return M(name, tarfile.REGTYPE, data.encode() if isinstance(data, str) else data, **kw)


def dir_(name: str | bytes) -> M:
    return M(name, tarfile.DIRTYPE, mode=0o755)


def symlink(name: str | bytes, target: str | bytes) -> M:
    return M(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str | bytes, target: str | bytes) -> M:
    return M(name, tarfile.LNKTYPE, linkname=target)


def chardev(name: str, major: int, minor: int) -> M:
    return M(name, tarfile.CHRTYPE, mode=0o600, devmajor=major, devminor=minor)


def member(m: M, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """Header block(s) and data padded to whole blocks."""
    return m.header(fmt) + m.data + bytes(-len(m.data) % 512)


def tar(members: Sequence[M], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar of ``members`` in stream order, with the two zero end blocks."""
    return b"".join(member(m, fmt) for m in members) + bytes(1024)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def raw_header(name: bytes, type_: bytes, size: int, *, extra: Mapping[int, bytes] = {}) -> bytes:
    """One hand-made USTAR/GNU header block (for member kinds ``tarfile`` will not write).

    Args:
        name: the name field (at most 100 bytes).
        type_: the type flag.
        size: the size field.
        extra: offset → bytes written into the block before the checksum.
    """
    block = bytearray(512)
    block[0:len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = b"%011o\0" % size
    block[136:148] = b"00000000000\0"
    block[156:157] = type_
    block[257:265] = b"ustar  \0"  # GNU magic
    for offset, value in extra.items():
        block[offset:offset + len(value)] = value
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\0" % sum(block)
    return bytes(block)


# ------------------------------------------------------------------------------ OCI layouts


def image_config(layer_tars: Sequence[bytes], **extra: Any) -> bytes:
    doc: dict[str, Any] = {
        "architecture": goarch(), "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256(t) for t in layer_tars]},
    }
    doc.update(extra)
    return json.dumps(doc, sort_keys=True).encode()


@dataclass
class Layout:
    path: Path
    manifest: bytes
    config: bytes
    layer_blobs: list[bytes]

    def blob_path(self, data: bytes) -> Path:
        return self.path / "blobs" / "sha256" / sha256(data)

    def descriptor(self, data: bytes, media_type: str) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": "sha256:" + sha256(data), "size": len(data)}


def put_blob(path: Path, data: bytes) -> str:
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / sha256(data)).write_bytes(data)
    return "sha256:" + sha256(data)


def write_index(path: Path, entries: Sequence[Mapping[str, Any]]) -> None:
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                 "manifests": list(entries)}))


def oci_layout(path: Path, layer_tars: Sequence[bytes], *, ref_name: str | None = "latest",
               compress: bool = True, config: bytes | None = None,
               blobs: Sequence[bytes] | None = None) -> Layout:
    """An OCI image layout holding one image.

    Args:
        path: the layout directory (created).
        layer_tars: the uncompressed layer tars, base first.
        ref_name: the index entry's ref name annotation (``None``: none).
        compress: gzip the layer blobs.
        config: the config bytes instead of :func:`image_config`.
        blobs: the stored layer blobs instead of the (compressed) tars.
    """
    path.mkdir(parents=True, exist_ok=True)
    stored = list(blobs) if blobs is not None else [gz(t) if compress else t for t in layer_tars]
    cfg = config if config is not None else image_config(layer_tars)
    for b in stored:
        put_blob(path, b)
    put_blob(path, cfg)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + sha256(cfg), "size": len(cfg)},
        "layers": [{"mediaType": OCI_LAYER_GZIP if compress else OCI_LAYER,
                    "digest": "sha256:" + sha256(b), "size": len(b)} for b in stored],
    }, sort_keys=True).encode()
    put_blob(path, manifest)
    entry: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + sha256(manifest),
                             "size": len(manifest)}
    if ref_name is not None:
        entry["annotations"] = {REF_NAME: ref_name}
    write_index(path, [entry])
    return Layout(path, manifest, cfg, stored)


def oci_layout_streamed(path: Path, chunks: Iterable[bytes], *, ref_name: str = "latest") -> None:
    """An OCI layout with one uncompressed layer written chunk by chunk (a layer too big
    to hold in memory); its diff ID and digest are hashed on the way."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    tmp = blobs / "incoming"
    with open(tmp, "wb") as f:
        for chunk in chunks:
            h.update(chunk)
            size += len(chunk)
            f.write(chunk)
    tmp.rename(blobs / h.hexdigest())
    cfg = json.dumps({"architecture": goarch(), "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h.hexdigest()]}}).encode()
    put_blob(path, cfg)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + sha256(cfg), "size": len(cfg)},
        "layers": [{"mediaType": OCI_LAYER, "digest": "sha256:" + h.hexdigest(), "size": size}],
    }).encode()
    put_blob(path, manifest)
    write_index(path, [{"mediaType": OCI_MANIFEST, "digest": "sha256:" + sha256(manifest),
                        "size": len(manifest), "annotations": {REF_NAME: ref_name}}])


def tar_dir(root: Path) -> bytes:
    """A tar of a directory's files (an oci-archive of a layout)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for p in sorted(root.rglob("*")):
            tf.add(p, arcname=p.relative_to(root).as_posix(), recursive=False)
    return buf.getvalue()


# ------------------------------------------------------------------------------ docker save


def docker_save(layer_tars: Sequence[bytes], *, repo_tag: str | None = "test/hostile:latest",
                manifest: Any = None, extra: Sequence[M] = (), replace: Mapping[str, M] | None = None,
                config: bytes | None = None) -> bytes:
    """A ``docker save`` archive (dockerd layout) as bytes.

    Args:
        layer_tars: base first; stored as ``<n-hex>/layer.tar``.
        repo_tag: the ``RepoTags`` entry (``None``: untagged).
        manifest: the ``manifest.json`` document instead of the generated one.
        extra: members appended after the generated ones.
        replace: member name → member that takes its place (a symlink instead of a file...).
        config: the config bytes instead of :func:`image_config`.
    """
    cfg = config if config is not None else image_config(layer_tars)
    cfg_name = sha256(cfg) + ".json"
    members: list[M] = [file(cfg_name, cfg)]
    layer_paths = []
    for i, t in enumerate(layer_tars):
        lid = sha256(b"layer%d" % i + t)
        members += [dir_(lid), file(f"{lid}/layer.tar", t)]
        layer_paths.append(f"{lid}/layer.tar")
    doc = manifest if manifest is not None else [
        {"Config": cfg_name, "RepoTags": [repo_tag] if repo_tag else None, "Layers": layer_paths}]
    members.append(file("manifest.json", json.dumps(doc).encode()))
    replace = dict(replace or {})
    members = [replace.pop(m.name, m) if isinstance(m.name, str) else m for m in members]
    members += list(replace.values()) + list(extra)
    return tar(members)
