"""The trust boundary for blobs (docker2aci.verify.VerifyingReader): the length and the
digest are checked at the end, and a stream that checks its own bytes is not hashed
again."""

from __future__ import annotations

import hashlib
import io

import pytest

from docker2aci.digest import Digest
from docker2aci.errors import DigestMismatch, SizeMismatch
from docker2aci.verify import VerifyingReader

DATA = b"layer bytes " * 1000
DIGEST = Digest("sha256", hashlib.sha256(DATA).hexdigest())
OTHER = Digest("sha256", hashlib.sha256(b"other").hexdigest())


class _SelfChecked(io.BytesIO):
    """A stream that says it checks its bytes against ``verified_digest`` (as the
    streamed registry blob does); here it does not, to show who is trusted."""

    def __init__(self, data: bytes, verified_digest: Digest) -> None:
        super().__init__(data)
        self.verified_digest = verified_digest


def test_the_right_bytes_read_through() -> None:
    with VerifyingReader(io.BytesIO(DATA), DIGEST, len(DATA), "blob") as reader:
        assert reader.read() == DATA


@pytest.mark.parametrize("data, error", [
    (DATA[:-1] + b"X", DigestMismatch),
    (DATA[:-1], SizeMismatch),
    (DATA + b"X", SizeMismatch),
])
def test_other_bytes_raise_at_the_end(data: bytes, error: type[Exception]) -> None:
    with VerifyingReader(io.BytesIO(data), DIGEST, len(DATA), "blob x") as reader, pytest.raises(error, match="blob x"):
        reader.drain()


@pytest.mark.parametrize("data, size, error", [
    (DATA[:-1] + b"X", len(DATA), DigestMismatch),
    (DATA[:-1] + b"X", None, DigestMismatch),
    (DATA[:-1], len(DATA), SizeMismatch),
])
def test_reading_to_eof_without_drain_checks_too(data: bytes, size: int | None, error: type[Exception]) -> None:
    """A reader read to EOF by ``read``/``readinto`` (as the layer code does, never
    calling ``drain``) raises at EOF instead of returning it."""
    with VerifyingReader(io.BytesIO(data), DIGEST, size, "blob y") as reader, pytest.raises(error, match="blob y"):
        reader.read()


def test_a_stream_that_checks_the_same_digest_is_only_counted() -> None:
    wrong = DATA[:-1] + b"X"
    with VerifyingReader(_SelfChecked(wrong, DIGEST), DIGEST, len(DATA), "blob") as reader:
        assert reader.drain() == len(DATA)
    with VerifyingReader(_SelfChecked(DATA[:-1], DIGEST), DIGEST, len(DATA), "blob") as reader, \
            pytest.raises(SizeMismatch):
        reader.drain()


def test_a_stream_that_checks_another_digest_is_hashed() -> None:
    with VerifyingReader(_SelfChecked(DATA[:-1] + b"X", OTHER), DIGEST, len(DATA), "blob") as reader, \
            pytest.raises(DigestMismatch):
        reader.drain()
