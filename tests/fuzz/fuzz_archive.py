"""Fuzz the ``docker save`` readers (``docker2aci.sources.archive`` over
``sources.files.TarTree``): ``manifest.json`` (with Docker 25's ``index.json``),
``repositories`` and the legacy ``<id>/json`` parent chain, member symlinks, and the
layer streams they hand out; also sniffing with ``is_docker_archive`` and, for archives
that are not ``docker save``, the OCI layout reader they fall back to.

The archive is written into the input's own temporary directory; a compressed archive is
spooled (decompressed) into the temporary directory, and must be gone after ``close``.

Input: byte 0: bit 0 recompute the tar header checksums, bit 1 gzip the archive, bits 2-3
the selector (none, a name, a tag, an image ID prefix); then the archive tar.

Run: ``python tests/fuzz/fuzz_archive.py [libFuzzer args] [CORPUS_DIR...]``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys

import atheris
import fuzzlib

with atheris.instrument_imports(include=["docker2aci", "converters"]):
    from docker2aci.manifest import Platform
    from docker2aci.sources.archive import DockerArchive, is_docker_archive
    from docker2aci.sources.files import TarTree
    from docker2aci.sources.oci_layout import OciLayout

fuzzlib.instrument_tarfile()

_PLATFORM = Platform("linux", "amd64")
MAX_LAYER_READ = 1 << 20
"""Bytes read from each layer stream."""


def _selectors(config_hex: str) -> list[str | None]:
    return [None, "test/busybox", "latest", "sha256:" + config_hex[:12]]


_SELECTORS = _selectors(hashlib.sha256(b'{"os":"linux"}').hexdigest())


@fuzzlib.with_workdir
def test_one(data: bytes, workdir: str) -> None:
    if not data:
        return
    mode, body = data[0], data[1:]
    if mode & 1:
        body = fuzzlib.fix_checksums(body)
    if mode & 2:
        body = gzip.compress(body, mtime=0)
    path = os.path.join(workdir, "archive.tar")
    with open(path, "wb") as f:
        f.write(body)
    files = TarTree(path, "fuzz")
    try:
        source = DockerArchive(files) if is_docker_archive(files) else OciLayout(files, "fuzz")
        source.platforms(None)
        resolved = source.resolve(_SELECTORS[(mode >> 2) % len(_SELECTORS)], _PLATFORM)
        for blob in resolved.layers:
            with blob.open() as stream:
                stream.read(MAX_LAYER_READ)
    finally:
        files.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seeds() -> list[bytes]:
    t = fuzzlib.tar_bytes
    config = b'{"os":"linux"}'
    chex = _sha(config)
    layer = t([("etc/passwd", b"root:x:0:0::/:/bin/sh\n")])
    lid = _sha(layer)
    manifest = json.dumps([{"Config": f"{chex}.json", "RepoTags": ["test/busybox:latest"],
                            "Layers": [f"{lid}/layer.tar"]}]).encode()
    repositories = json.dumps({"test/busybox": {"latest": lid}}).encode()
    dockerd = t([(f"{chex}.json", config), (f"{lid}/", b"", "dir"), (f"{lid}/layer.tar", layer),
                 (f"{lid}/json", b'{"id":"' + lid.encode() + b'"}'), ("manifest.json", manifest),
                 ("repositories", repositories)])
    skopeo_manifest = json.dumps([{"Config": f"{chex}.json", "RepoTags": ["test/busybox:1", "test/busybox:latest"],
                                   "Layers": [f"{lid}/layer.tar"]}]).encode()
    skopeo = t([(f"{lid}.tar", layer), (f"{lid}/layer.tar", f"../{lid}.tar".encode(), "sym"),
                (f"{chex}.json", config), ("manifest.json", skopeo_manifest)])
    oci_manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": f"sha256:{chex}", "size": len(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                           "digest": f"sha256:{lid}", "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{_sha(oci_manifest)}",
         "size": len(oci_manifest), "annotations": {"org.opencontainers.image.ref.name": "latest",
                                                    "io.containerd.image.name": "docker.io/test/busybox:latest"},
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    d25_manifest = json.dumps([{"Config": f"blobs/sha256/{chex}", "RepoTags": ["test/busybox:latest"],
                                "Layers": [f"blobs/sha256/{lid}"]}]).encode()
    docker25 = t([("blobs/sha256/" + chex, config), ("blobs/sha256/" + lid, layer),
                  ("blobs/sha256/" + _sha(oci_manifest), oci_manifest), ("index.json", index),
                  ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("manifest.json", d25_manifest)])
    oci = t([("blobs/sha256/" + chex, config), ("blobs/sha256/" + lid, layer),
             ("blobs/sha256/" + _sha(oci_manifest), oci_manifest), ("index.json", index),
             ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')])
    parent, child = "a" * 64, "b" * 64
    legacy = t([("repositories", json.dumps({"test/busybox": {"latest": child}}).encode()),
                (f"{child}/json", json.dumps({"id": child, "parent": parent, "config": {}}).encode()),
                (f"{child}/layer.tar", layer), (f"{parent}/json", b'{"id":"' + parent.encode() + b'"}'),
                (f"{parent}/layer.tar", layer)])
    return [bytes([mode]) + archive for archive in (dockerd, skopeo, docker25, oci, legacy)
            for mode in (0, 1, 2, 4, 8, 12)]


if __name__ == "__main__":
    fuzzlib.main("archive", test_one, seeds, max_len=128 * 1024)
    sys.exit(0)
