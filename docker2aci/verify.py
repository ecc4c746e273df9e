"""The trust boundary: a stream that hashes what it returns and checks it at EOF.

Sources hand back untrusted bytes; every blob is read through a ``VerifyingReader``
(umoci ``pkg/hardening/verified_reader.go`` is the model). It never returns bytes past
the expected size, probes for extra bytes at that boundary, and raises instead of
returning EOF when the size or digest is wrong. A stream that checks its bytes itself (a
registry blob read while it downloads, which its fetch hashes) is counted, not hashed again.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from .digest import Digest
from .errors import DigestMismatch, SizeMismatch


class VerifyingReader(io.RawIOBase):
    """Wraps a binary stream; at EOF checks its length and digest.

    Args:
        untrusted: the stream to read; closed with this reader.
        digest: the digest the whole content must have, or ``None`` to only count.
        size: the exact length in bytes, or ``None`` when unknown.
        what: names the content in errors (a digest or a path, never a credential).

    A stream that checks every byte it returns against ``digest`` itself, and raises
    before its end otherwise, says so with a ``verified_digest`` attribute equal to
    ``digest`` (:class:`docker2aci.streamedblob.StreamedBlob`, whose fetch hashes the
    blob): it is counted, not hashed again, and its verdict is this reader's, its
    ``SizeMismatch`` or ``DigestMismatch`` raised again with ``what`` before its own text.

    Raises (from ``read``):
        SizeMismatch: the stream is longer or shorter than ``size``.
        DigestMismatch: the content does not hash to ``digest``.
    """

    def __init__(self, untrusted: BinaryIO, digest: Digest | None, size: int | None, what: str) -> None:
        super().__init__()
        self._stream = untrusted
        self._digest = digest
        checks_itself = digest is not None and getattr(untrusted, "verified_digest", None) == digest
        self._hash = digest.new_hash() if digest and not checks_itself else None
        self._size = size
        self._what = what
        self._count = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("read of a closed verifying reader")
        view = memoryview(buffer).cast("B")
        want = len(view)
        if self._size is not None:
            want = min(want, self._size - self._count)
        if want <= 0:
            self._finish()
            return 0
        readinto = getattr(self._stream, "readinto", None)
        try:
            if readinto is not None:
                n = readinto(view[:want]) or 0
            else:
                data = self._stream.read(want)
                n = len(data)
                view[:n] = data
        except (SizeMismatch, DigestMismatch) as err:  # the verdict of a stream that checks itself
            raise self._named(err) from err
        if not n:
            self._finish()
            return 0
        self._count += n
        if self._hash is not None:
            self._hash.update(view[:n])
        return n

    def _finish(self) -> None:
        if self._verified:
            return
        if self._size is not None:
            if self._count < self._size:
                raise SizeMismatch(self._what, self._size, self._count)
            try:
                extra = self._stream.read(1)
            except (SizeMismatch, DigestMismatch) as err:
                raise self._named(err) from err
            if extra:
                raise SizeMismatch(self._what, self._size, self._count + 1)
        if self._hash is not None and self._digest is not None:
            actual = Digest(self._digest.algorithm, self._hash.hexdigest())
            if actual != self._digest:
                raise DigestMismatch(self._what, str(self._digest), str(actual))
        self._verified = True

    def _named(self, err: SizeMismatch | DigestMismatch) -> SizeMismatch | DigestMismatch:
        """``err``, raised by the stream, with this reader's ``what`` before its own."""
        if isinstance(err, SizeMismatch):
            return SizeMismatch(f"{self._what}: {err.what}", err.expected, err.actual)
        return DigestMismatch(f"{self._what}: {err.what}", err.expected, err.actual)

    def drain(self) -> int:
        """Read to EOF (so verification runs) and return the total byte count."""
        while self.read(1 << 20):
            pass
        self._finish()
        return self._count

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()
