"""The ``Digest`` value type: what ``Digest.parse`` accepts (OCI image-spec descriptor.md
"Digests": registered algorithms, lower-case hex of the right length, nothing around it),
and the digests it computes."""

from __future__ import annotations

import hashlib

import pytest

from docker2aci.digest import Digest
from docker2aci.errors import InvalidManifest

DATA = b"docker2aci"


@pytest.mark.parametrize("algorithm, length", [("sha256", 64), ("sha384", 96), ("sha512", 128)])
def test_each_algorithm_takes_its_own_length(algorithm: str, length: int) -> None:
    assert Digest.parse(f"{algorithm}:{'0' * length}") == Digest(algorithm, "0" * length)
    for other in {64, 96, 128} - {length}:
        with pytest.raises(InvalidManifest) as info:
            Digest.parse(f"{algorithm}:{'0' * other}", what="m: field digest")
        assert str(info.value) == f"m: field digest: invalid digest '{algorithm}:{'0' * other}'"


@pytest.mark.parametrize("text", [
    pytest.param("sha256:" + "A" * 64, id="upper-case-hex"),
    pytest.param("sha256:" + "a" * 64 + "\n", id="trailing-newline"),
    pytest.param("\nsha256:" + "a" * 64, id="leading-newline"),
    pytest.param("sha256:" + "a" * 63 + "g", id="not-hex"),
    pytest.param("SHA256:" + "a" * 64, id="upper-case-algorithm"),
    pytest.param("md5:" + "a" * 32, id="unregistered-algorithm"),
])
def test_malformed_digests_are_refused(text: str) -> None:
    with pytest.raises(InvalidManifest):
        Digest.parse(text)


def test_computed_digests_and_their_short_form() -> None:
    digest = Digest.of_bytes(DATA)
    assert str(digest) == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert digest.short == hashlib.sha256(DATA).hexdigest()[:12]
    assert Digest.of_bytes(DATA, "sha512") == Digest("sha512", hashlib.sha512(DATA).hexdigest())
