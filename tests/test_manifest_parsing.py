"""The parsers of docker2aci.manifest on exact documents: descriptors, the kind of a
document, indexes (attestations, nested indexes, the platform chosen) and schema 1
(layer order, history pairing, the canonical payload of a signed manifest).

Each test pins a rule that a hand mutation of the parser broke without any other test
failing (mutation review): the values are the documents' own."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from docker2aci import mediatypes
from docker2aci.digest import Digest
from docker2aci.errors import InvalidManifest, PlatformNotFound
from docker2aci.manifest import (
    Descriptor,
    Document,
    Platform,
    document_kind,
    follow_indexes,
    manifest_digests,
    parse_index,
    parse_manifest,
    parse_schema1,
    require_image_config,
    schema1_payload,
    select_platform,
)

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
CONFIG = {"mediaType": mediatypes.OCI_CONFIG, "digest": C, "size": 7}


def _desc(digest: str, media_type: str = mediatypes.OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": 100, **extra}


def _index(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": list(entries)}).encode()


def test_a_boolean_size_is_no_size() -> None:
    """JSON ``true`` is no integer, though Python's ``bool`` is an ``int``."""
    with pytest.raises(InvalidManifest) as info:
        Descriptor.from_json({"mediaType": mediatypes.OCI_CONFIG, "digest": C, "size": True}, "m: config")
    assert str(info.value) == "m: config: field size is not a non-negative integer: True"


def test_a_manifest_without_schema_version_is_refused() -> None:
    body = json.dumps({"mediaType": mediatypes.OCI_MANIFEST, "config": CONFIG, "layers": []}).encode()
    with pytest.raises(InvalidManifest) as info:
        parse_manifest(body, "m")
    assert str(info.value) == "m: field schemaVersion is None, expected 2"


def test_a_config_without_a_media_type_is_let_through() -> None:
    body = json.dumps({"schemaVersion": 2, "config": {"digest": C, "size": 7}, "layers": []}).encode()
    manifest = parse_manifest(body, "m")
    assert manifest.config.media_type == ""
    require_image_config(manifest, "m")  # no error


@pytest.mark.parametrize("media_type, body, kind", [
    # the source's media type wins, its parameters ignored, whatever the body says
    (mediatypes.OCI_INDEX + "; charset=utf-8", b'{"schemaVersion": 2}', "index"),
    (" Application/VND.Docker.Distribution.Manifest.V2+json ;x=y", b'{"schemaVersion": 2}', "manifest"),
    # without one, the body's fields, then its shape
    (None, b'{"schemaVersion": 2, "manifests": []}', "index"),
    ("", b'{"schemaVersion": 2, "layers": [], "config": {}}', "manifest"),
    (None, b'{"schemaVersion": 1, "name": "x", "fsLayers": [], "history": []}', "schema1"),
    ("text/plain", json.dumps({"schemaVersion": 2, "mediaType": mediatypes.DOCKER_LIST}).encode(), "index"),
], ids=["type-with-parameters", "type-case-and-spaces", "shape-manifests", "shape-layers", "schema-version-1",
        "body-media-type"])
def test_document_kind(media_type: str | None, body: bytes, kind: str) -> None:
    assert document_kind(body, media_type, "m") == kind


def test_attestation_entries_are_left_out_of_an_index() -> None:
    """A buildx index: each image, then its attestation manifest (``unknown/unknown``)."""
    attestation = {mediatypes.ANNOTATION_REFERENCE_TYPE: mediatypes.REFERENCE_TYPE_ATTESTATION,
                   "vnd.docker.reference.digest": A}
    body = _index(_desc(A, platform={"os": "linux", "architecture": "amd64"}),
                  _desc(B, platform={"os": "unknown", "architecture": "unknown"}, annotations=attestation))
    index = parse_index(body, "i")
    assert [str(d.digest) for d in index.manifests] == [A]
    with pytest.raises(PlatformNotFound) as info:
        select_platform(index, Platform("unknown", "unknown"), "i")
    assert str(info.value) == "i: no image for platform unknown/unknown (present: linux/amd64)"


def test_two_nested_indexes_without_a_platform_are_no_choice() -> None:
    """One nested index without a platform is followed; of two, neither is chosen."""
    one = parse_index(_index(_desc(A, mediatypes.OCI_INDEX)), "i")
    assert str(select_platform(one, Platform("linux", "amd64"), "i").digest) == A
    two = parse_index(_index(_desc(A, mediatypes.OCI_INDEX), _desc(B, mediatypes.OCI_INDEX)), "i")
    with pytest.raises(PlatformNotFound) as info:
        select_platform(two, Platform("linux", "amd64"), "i")
    assert str(info.value) == "i: no image for platform linux/amd64 (present: none)"


def test_the_platform_followed_is_the_first_index_s_entry() -> None:
    """index (linux/arm/v7) → index (linux/arm/v6) → manifest: the platform reported is the
    one the first index names, as the index digest is the first index's."""
    inner = _index(_desc(C, platform={"os": "linux", "architecture": "arm", "variant": "v6"}))
    inner_digest = Digest.of_bytes(inner)
    top = _index(_desc(str(inner_digest), mediatypes.OCI_INDEX,
                       platform={"os": "linux", "architecture": "arm", "variant": "v7"}))
    top_doc = Document(top, mediatypes.OCI_INDEX, Digest.of_bytes(top), "index")
    manifest = Document(b"{}", mediatypes.OCI_MANIFEST, Digest.parse(C), "manifest")
    docs = {inner_digest: Document(inner, mediatypes.OCI_INDEX, inner_digest, "index"), manifest.digest: manifest}
    followed = follow_indexes(top_doc, lambda d: docs[d.digest], Platform.parse("linux/arm/v7"), "src")
    assert followed.document is manifest
    assert followed.index_digest == top_doc.digest
    assert followed.platform == Platform("linux", "arm", "v7")


# -- schema 1 -------------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _schema1(fs_layers: list[str], history: int, signatures: list[dict[str, Any]] | None = None) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 1, "name": "test/app", "tag": "v1", "architecture": "amd64",
                           "fsLayers": [{"blobSum": d} for d in fs_layers],
                           "history": [{"v1Compatibility": json.dumps({"id": str(i)})} for i in range(history)]}
    body = json.dumps(doc, indent=3).encode()
    if signatures is None:
        return body
    return body[:-2] + b',\n   "signatures": ' + json.dumps(signatures).encode() + b"\n}"


def _signature(length: int, tail: bytes) -> dict[str, Any]:
    protected = _b64url(json.dumps({"formatLength": length, "formatTail": _b64url(tail)}).encode())
    return {"header": {"alg": "ES256"}, "signature": "c2ln", "protected": protected}


def test_schema1_layers_come_base_first_and_history_pairs_with_fs_layers() -> None:
    manifest = parse_schema1(_schema1([A, B], 2), "s")  # fsLayers: top layer first
    assert [str(d) for d in manifest.layers] == [B, A]
    assert json.loads(manifest.config) == {"id": "0"}
    for history in (1, 3):
        with pytest.raises(InvalidManifest) as info:
            parse_schema1(_schema1([A, B], history), "s")
        assert str(info.value) == "s: field history does not pair with fsLayers"


def test_a_signed_schema1_is_known_by_its_payload_unless_its_signatures_disagree() -> None:
    unsigned = _schema1([A], 1)
    length = len(unsigned) - 2  # the payload ends before "\n}"; the tail puts it back
    one = _schema1([A], 1, [_signature(length, b"\n}")])
    assert schema1_payload(one) == unsigned
    assert manifest_digests(one) == (Digest.of_bytes(one), Digest.of_bytes(unsigned))
    assert parse_schema1(one, "s").canonical_digest == Digest.of_bytes(unsigned)
    disagreeing = _schema1([A], 1, [_signature(length, b"\n}"), _signature(length, b"\n }")])
    assert schema1_payload(disagreeing) is None
    assert manifest_digests(disagreeing) == (Digest.of_bytes(disagreeing),)
