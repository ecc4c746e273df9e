"""Fuzz the image reference parser (``docker2aci.reference.ImageRef.parse``) and the
``transport:rest`` split.

Besides "only ``InvalidReference`` comes out": a parsed reference prints (``str``) as a
reference that parses back to the same domain, repository, tag and digest, and its
parts follow the grammar (lower-case repository, valid host, valid tag).

Run: ``python tests/fuzz/fuzz_reference.py [libFuzzer args] [CORPUS_DIR...]``.
"""

from __future__ import annotations

import sys

import atheris
import fuzzlib

with atheris.instrument_imports(include=["docker2aci", "converters"]):
    from docker2aci.reference import ImageRef, is_valid_host, is_valid_tag, split_transport

_TRANSPORTS = frozenset({"docker", "docker-archive", "oci", "oci-archive", "docker-daemon"})


def test_one(data: bytes) -> None:
    if not data:
        return
    text = data[1:].decode("utf-8", "surrogateescape")
    split_transport(text, _TRANSPORTS)
    ref = ImageRef.parse(text, default_tag=bool(data[0] & 1))
    assert ref.repository == ref.repository.lower(), ref
    assert is_valid_host(ref.domain), ref
    assert ref.tag is None or is_valid_tag(ref.tag), ref
    again = ImageRef.parse(str(ref), default_tag=False)
    assert (again.domain, again.repository, again.tag, again.digest) == (ref.domain, ref.repository, ref.tag,
                                                                         ref.digest), (text, str(ref), again)
    assert ref.api_host


def seeds() -> list[bytes]:
    refs = ["busybox", "library/busybox:1.36", "docker.io/library/busybox", "index.docker.io/busybox",
            "localhost:5000/foo/bar:v1", "127.0.0.1:5000/test/busybox:latest", "[::1]:5000/a/b",
            "quay.io/coreos/etcd@sha256:" + "a" * 64, "gcr.io/distroless/static:nonroot@sha256:" + "b" * 64,
            "a/b-c__d.e/f:tag_1.2-3", "UPPER/case", "a" * 64, "docker://busybox", "oci-archive:/tmp/x.tar:img",
            "example.com/" + "x" * 250, "registry-1.docker.io/x/y:z", "foo@sha512:" + "c" * 128]
    return [bytes([b]) + r.encode() for r in refs for b in (0, 1)]


if __name__ == "__main__":
    fuzzlib.main("reference", test_one, seeds, max_len=1024)
    sys.exit(0)
