"""Build small ``docker save`` archives (and their hostile variants) in test code.

The layouts mirror the four named in public case 36 (``../shared/cases/public-cases.md``):

(a) legacy, before Docker 1.10: ``repositories`` + ``<id>/VERSION``, ``<id>/json`` (with a
    ``parent`` chain) and ``<id>/layer.tar``, no ``manifest.json``
    (:func:`build_legacy_save`);
(b) Docker 1.10 to 24: ``manifest.json`` + ``<config hex>.json`` + ``<id>/layer.tar``
    (+ ``repositories``) (:func:`build_manifest_save`, ``layout="dockerd"``);
(c) Docker 25+: ``manifest.json`` whose paths are ``blobs/sha256/<hex>``, plus
    ``index.json`` and ``oci-layout`` (:func:`build_manifest_save`, ``layout="docker25"``);
(d) containerd image store: ``index.json`` → nested image index → manifest, gzip layers,
    no ``manifest.json`` and no ``repositories`` (:func:`build_containerd_save`).

They are written by code rather than by a tool because no tool installed here writes
them (there is no Docker engine, and skopeo writes only its own ``<diffid>.tar`` variant
of (b)), and because the hostile variants (parent loops, ``../`` paths in
``manifest.json``, escaping symlinks) must be crafted byte by byte: no tool writes those
on purpose. Everything is deterministic (fixed mtimes, sorted members, gzip mtime 0).
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

FIXED_MTIME = 1_700_000_000
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnginx:x:101:102:nginx:/var/cache/nginx:/sbin/nologin\n"


def sha256(data: bytes) -> str:
    """``<64 hex>`` of ``data``."""
    return hashlib.sha256(data).hexdigest()


def canonical(doc: Any) -> bytes:
    """Compact JSON bytes, as Docker writes its metadata files."""
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Member:
    """One member of an archive or layer tar.

    Attributes:
        name: the member name, written verbatim (``../x`` included).
        data: file content (a regular file) when ``symlink`` and ``directory`` are unset.
        symlink: makes the member a symlink to this target.
        directory: makes the member a directory.
        mode: permission bits.
    """

    name: str
    data: bytes = b""
    symlink: str | None = None
    directory: bool = False
    mode: int = 0o644


def tar_bytes(members: Iterable[Member]) -> bytes:
    """An uncompressed tar (PAX format, uid/gid 0, fixed mtime) of ``members`` in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.mtime = FIXED_MTIME
            info.mode = m.mode
            if m.symlink is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = m.symlink
                tar.addfile(info)
            elif m.directory:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
    return buf.getvalue()


def layer(files: Mapping[str, bytes]) -> bytes:
    """A layer tar holding ``files`` (path → content), with entries for parent dirs."""
    members: list[Member] = []
    seen: set[str] = set()
    for path in sorted(files):
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in seen:
                seen.add(d)
                members.append(Member(d + "/", directory=True))
        members.append(Member(path, files[path]))
    return tar_bytes(members)


def gzip_bytes(data: bytes) -> bytes:
    """gzip with header mtime 0 and no file name (deterministic)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def write_archive(path: Path, members: Iterable[Member]) -> Path:
    """Write ``members`` as an uncompressed tar file at ``path``."""
    path.write_bytes(tar_bytes(members))
    return path


#: Two layers: the base holds ``/etc/passwd`` (nginx is uid 101, gid 102) and
#: ``etc/version`` = ``1``; the top one rewrites ``etc/version`` to ``2``, so the squashed
#: content shows whether the layers were applied base first.
BASE_LAYER = layer({"etc/passwd": PASSWD, "etc/version": b"1\n", "bin/hello": b"hello\n"})
TOP_LAYER = layer({"etc/version": b"2\n", "app/data.txt": b"top\n"})


def image_config(layers: Sequence[bytes], *, diff_ids: bool = True, **config: Any) -> dict[str, Any]:
    """An image config for ``layers`` (uncompressed tars, base first).

    Keyword arguments go into ``config`` (``User``, ``Cmd`` ...), except ``architecture``,
    ``os``, ``variant``, ``created`` and ``author`` which are top-level fields.
    """
    top = {k: config.pop(k) for k in ("architecture", "os", "variant", "created", "author") if k in config}
    doc: dict[str, Any] = {"architecture": "amd64", "os": "linux", **top, "config": config}
    if diff_ids:
        doc["rootfs"] = {"type": "layers", "diff_ids": [f"sha256:{sha256(t)}" for t in layers]}
    return doc


@dataclass
class SavedImage:
    """One image of a ``docker save`` archive with a ``manifest.json``.

    Attributes:
        config: the image config document (see :func:`image_config`).
        layers: uncompressed layer tars, base first.
        repo_tags: the ``RepoTags`` entry (``None`` writes ``null``: an untagged image).
    """

    config: dict[str, Any]
    layers: list[bytes] = field(default_factory=lambda: [BASE_LAYER, TOP_LAYER])
    repo_tags: list[str] | None = None

    @property
    def config_bytes(self) -> bytes:
        return canonical(self.config)

    @property
    def config_hex(self) -> str:
        """The config digest's hex: Docker's image ID."""
        return sha256(self.config_bytes)


def oci_manifest(img: SavedImage, layer_blobs: Sequence[bytes], layer_type: str) -> bytes:
    """The OCI image manifest bytes of ``img`` with ``layer_blobs`` (as stored) of ``layer_type``."""
    return canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": f"sha256:{img.config_hex}", "size": len(img.config_bytes)},
        "layers": [{"mediaType": layer_type, "digest": f"sha256:{sha256(b)}", "size": len(b)} for b in layer_blobs],
    })


def build_manifest_save(path: Path, images: Sequence[SavedImage], layout: str = "dockerd",
                        extra: Iterable[Member] = (), containerd_index: bool = False,
                        absent_platforms: Sequence[Mapping[str, str]] = ()) -> Path:
    """Write a ``docker save`` archive with a ``manifest.json`` (layouts (b) and (c)).

    Args:
        path: the archive to write.
        images: its images, in ``manifest.json`` order.
        layout: ``dockerd`` (``<hex>.json`` + ``<id>/layer.tar`` + ``repositories``) or
            ``docker25`` (``blobs/sha256/<hex>`` + ``index.json`` + ``oci-layout``).
        extra: members appended as they are (for hostile variants).
        containerd_index: (``docker25``) as Docker 25+ with the containerd image store
            writes it: each ``index.json`` entry is an image index listing the image's
            own platform, after one entry per ``absent_platforms`` whose manifest blob
            is not in the archive (containerd saves only the platform it has).
    """
    members: list[Member] = []
    entries: list[dict[str, Any]] = []
    index_entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    blobs: dict[str, bytes] = {}
    for img in images:
        layer_paths: list[str] = []
        if layout == "dockerd":
            parent = ""
            for t in img.layers:
                layer_id = sha256(f"{parent} {sha256(t)}".encode())
                members += [Member(f"{layer_id}/", directory=True),
                            Member(f"{layer_id}/VERSION", b"1.0"),
                            Member(f"{layer_id}/json", canonical({"id": layer_id, "parent": parent} if parent
                                                                 else {"id": layer_id})),
                            Member(f"{layer_id}/layer.tar", t)]
                layer_paths.append(f"{layer_id}/layer.tar")
                parent = layer_id
            members.append(Member(f"{img.config_hex}.json", img.config_bytes))
            config_path = f"{img.config_hex}.json"
            for ref in img.repo_tags or []:
                repo, _, tag = ref.rpartition(":")
                repositories.setdefault(repo, {})[tag] = parent
        elif layout == "docker25":
            for t in img.layers:
                blobs[sha256(t)] = t
                layer_paths.append(f"blobs/sha256/{sha256(t)}")
            blobs[img.config_hex] = img.config_bytes
            config_path = f"blobs/sha256/{img.config_hex}"
            manifest = oci_manifest(img, img.layers, OCI_LAYER)
            blobs[sha256(manifest)] = manifest
            entry_type, entry_blob = OCI_MANIFEST, manifest
            if containerd_index:
                own = {k: img.config[k] for k in ("architecture", "os", "variant") if k in img.config}
                children = [canonical({"absent": dict(p)}) for p in absent_platforms]
                nested = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                    *({"mediaType": OCI_MANIFEST, "digest": f"sha256:{sha256(c)}", "size": len(c),
                       "platform": dict(p)} for c, p in zip(children, absent_platforms)),
                    {"mediaType": OCI_MANIFEST, "digest": f"sha256:{sha256(manifest)}", "size": len(manifest),
                     "platform": own}]})
                blobs[sha256(nested)] = nested
                entry_type, entry_blob = OCI_INDEX, nested
            for ref in img.repo_tags or [None]:  # type: ignore[list-item]
                annotations = {}
                if ref is not None:
                    annotations = {CONTAINERD_NAME: ref if "/" in ref else f"docker.io/library/{ref}",
                                   REF_NAME: ref.rpartition(":")[2]}
                index_entries.append({"mediaType": entry_type, "digest": f"sha256:{sha256(entry_blob)}",
                                      "size": len(entry_blob),
                                      **({"annotations": annotations} if annotations else {})})
        else:
            raise ValueError(f"unknown layout {layout!r}")
        entries.append({"Config": config_path, "RepoTags": img.repo_tags, "Layers": layer_paths})
    if layout == "docker25":
        members += [Member("blobs/", directory=True), Member("blobs/sha256/", directory=True)]
        members += [Member(f"blobs/sha256/{h}", b) for h, b in sorted(blobs.items())]
        members.append(Member("index.json", canonical({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                       "manifests": index_entries})))
        members.append(Member("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'))
    members.append(Member("manifest.json", canonical(entries)))
    if repositories:
        members.append(Member("repositories", canonical(repositories)))
    members += list(extra)
    return write_archive(path, members)


@dataclass
class LegacyLayer:
    """One ``<id>/`` directory of a legacy (pre-1.10) save.

    Attributes:
        layer_id: the directory name (64 hex for a well-formed archive).
        parent: the ``parent`` field of its ``json`` (``""``: none).
        tar: its ``layer.tar``.
        config: extra fields of its ``json`` (the top layer carries the image config).
    """

    layer_id: str
    parent: str
    tar: bytes
    config: dict[str, Any] = field(default_factory=dict)


def legacy_id(seed: str) -> str:
    """A deterministic 64-hex legacy layer ID."""
    return sha256(seed.encode())


def legacy_chain(tars: Sequence[bytes], top_config: dict[str, Any]) -> list[LegacyLayer]:
    """Legacy layers for ``tars`` (base first), each the parent of the next; the top one
    carries ``top_config`` (a v1 image JSON: ``config``, ``architecture`` ...)."""
    out: list[LegacyLayer] = []
    parent = ""
    for i, t in enumerate(tars):
        layer_id = legacy_id(f"layer {i} {sha256(t)}")
        out.append(LegacyLayer(layer_id, parent, t, top_config if i == len(tars) - 1 else {}))
        parent = layer_id
    return out


def build_legacy_save(path: Path, layers: Sequence[LegacyLayer],
                      repositories: Mapping[str, Mapping[str, str]]) -> Path:
    """Write a legacy (pre-1.10) ``docker save`` archive: no ``manifest.json``."""
    members: list[Member] = []
    for lay in layers:
        doc = {"id": lay.layer_id, **({"parent": lay.parent} if lay.parent else {}), **lay.config}
        members += [Member(f"{lay.layer_id}/", directory=True),
                    Member(f"{lay.layer_id}/VERSION", b"1.0"),
                    Member(f"{lay.layer_id}/json", canonical(doc)),
                    Member(f"{lay.layer_id}/layer.tar", lay.tar)]
    members.append(Member("repositories", canonical(repositories)))
    return write_archive(path, members)


@dataclass(frozen=True)
class ContainerdSave:
    """What :func:`build_containerd_save` wrote, for the expected values."""

    path: Path
    config_hex: str
    manifest_hex: str
    index_hex: str


def build_containerd_save(path: Path, img: SavedImage, name: str | None = "docker.io/library/busybox:latest",
                          ref_name: str = "latest") -> ContainerdSave:
    """Write a containerd-image-store ``docker save`` (layout (d)).

    ``index.json`` → a nested image index (linux/amd64 and linux/arm64/v8, of which only
    the amd64 manifest's blobs are in the archive, as containerd saves only what it
    has) → manifest with gzip layers → config. No ``manifest.json``, no
    ``repositories``. ``name=None`` leaves the entry without annotations (untagged).
    """
    gz = [gzip_bytes(t) for t in img.layers]
    manifest = oci_manifest(img, gz, OCI_LAYER_GZIP)
    absent = canonical({"absent": "arm64 manifest, not saved"})
    nested = canonical({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": f"sha256:{sha256(absent)}", "size": len(absent),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": OCI_MANIFEST, "digest": f"sha256:{sha256(manifest)}", "size": len(manifest),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    })
    blobs = {sha256(b): b for b in [*gz, img.config_bytes, manifest, nested]}
    entry: dict[str, Any] = {"mediaType": OCI_INDEX, "digest": f"sha256:{sha256(nested)}", "size": len(nested)}
    if name is not None:
        entry["annotations"] = {CONTAINERD_NAME: name, REF_NAME: ref_name}
    top = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
    members = [Member("blobs/", directory=True), Member("blobs/sha256/", directory=True)]
    members += [Member(f"blobs/sha256/{h}", b) for h, b in sorted(blobs.items())]
    members += [Member("index.json", top), Member("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    write_archive(path, members)
    return ContainerdSave(path, img.config_hex, sha256(manifest), sha256(nested))
