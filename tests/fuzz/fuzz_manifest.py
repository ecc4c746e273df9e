"""Fuzz the manifest parsers (``docker2aci.manifest``): ``document_kind`` under every media
type, ``parse_manifest``, ``parse_index`` with platform selection and
``follow_indexes``/``index_platforms`` (nested indexes fetched from the same input),
``parse_schema1`` with ``schema1_payload``/``manifest_digests``, and ``Platform.parse``.

Input: byte 0 picks the media type the source claims; the rest is the document.

Run: ``python tests/fuzz/fuzz_manifest.py [libFuzzer args] [CORPUS_DIR...]``.
"""

from __future__ import annotations

import base64
import json
import sys

import atheris
import fuzzlib

with atheris.instrument_imports(include=["docker2aci", "converters"]):
    from docker2aci import mediatypes
    from docker2aci.digest import Digest
    from docker2aci.manifest import (
        Descriptor,
        Document,
        Platform,
        document_kind,
        follow_indexes,
        index_platforms,
        manifest_digests,
        parse_index,
        parse_manifest,
        parse_schema1,
        schema1_payload,
    )

_MEDIA_TYPES = ("", mediatypes.OCI_MANIFEST, mediatypes.OCI_INDEX, "application/json",
                "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.docker.distribution.manifest.v1+prettyjws", "text/plain")
_PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm", "v7"), Platform("linux", "arm64", "v8"))


def test_one(data: bytes) -> None:
    if not data:
        return
    media_type = _MEDIA_TYPES[data[0] % len(_MEDIA_TYPES)]
    wanted = _PLATFORMS[(data[0] >> 4) % len(_PLATFORMS)]
    body = data[1:]
    where = "fuzz"
    try:
        Platform.parse(body[:64].decode("utf-8", "replace"))
    except fuzzlib.ALLOWED:
        pass
    payload = schema1_payload(body)
    assert payload is None or isinstance(payload, bytes)
    digests = manifest_digests(body)
    assert digests[0] == Digest.of_bytes(body)
    kind = document_kind(body, media_type, where)
    assert kind in ("index", "manifest", "schema1"), kind
    if kind == "schema1":
        parsed = parse_schema1(body, where)
        assert parsed.layers, "a schema 1 manifest without layers parsed"
        return
    if kind == "manifest":
        manifest = parse_manifest(body, where)
        assert isinstance(manifest.config, Descriptor)
        return
    index = parse_index(body, where)
    top = Document(body, media_type, Digest.of_bytes(body), kind)
    index_platforms(top, where)

    def fetch(desc: Descriptor) -> Document:
        # every entry leads back to this document: an index nested without end
        return Document(body, desc.media_type, desc.digest, document_kind(body, desc.media_type, where))

    if index.manifests:
        follow_indexes(top, fetch, wanted, where)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def seeds() -> list[bytes]:
    d1, d2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    manifest = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d1, "size": 7},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d2, "size": 32,
                            "urls": ["https://example.com/l"], "annotations": {"k": "v"}}]}
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": d1, "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": d2, "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v6"},
         "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    unsigned = {"schemaVersion": 1, "name": "test/busybox", "tag": "latest", "architecture": "amd64",
                "fsLayers": [{"blobSum": d1}, {"blobSum": d2}],
                "history": [{"v1Compatibility": json.dumps({"id": "a" * 64, "config": {"Cmd": ["sh"]}})},
                            {"v1Compatibility": "{}"}]}
    body = json.dumps(unsigned, indent=3).encode()
    length = len(body) - 2
    protected = _b64(json.dumps({"formatLength": length, "formatTail": _b64(body[length:])}).encode())
    signed = body[:length] + b',\n   "signatures": [{"protected": "' + protected.encode() + b'"}]\n}'
    docs = [json.dumps(manifest).encode(), json.dumps(index).encode(), body, signed, b"{}", b"[]", b"linux/arm/v7"]
    return [bytes([b]) + doc for doc in docs for b in (0, 1, 2, 0x13, 0x26)]


if __name__ == "__main__":
    fuzzlib.main("manifest", test_one, seeds, max_len=16 * 1024)
    sys.exit(0)
