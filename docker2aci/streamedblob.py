"""A blob read while it downloads into the blob cache.

A registry layer used to be downloaded into the cache whole, then read back from there
to be decompressed: two passes, one after the other, over the largest blobs. Here a
thread of its own fetches the blob into the cache (:meth:`BlobCache.open`, verified
as it is written) and hands every chunk, as it is written, to the reader, so the layer
is decompressed while it downloads and the compressed bytes are read from disk no more.
The chunks are handed over as they are (:class:`_Handoff`), not copied through a pipe,
and hashed once, by the fetch: the reader trusts the fetch's verdict
(:attr:`StreamedBlob.verified_digest`), which it awaits at the end of the chunks, so a
blob that is not what its digest says raises there and never reads as a clean end.

Whatever the handoff did not carry is read from the cached file once the blob is there,
and hashed as it is read:

* the rest of a download that the server restarted from 0. The handoff stops at the
  restart, and the digest of what it carried is taken then from the cache's temporary
  file; the cached file's first bytes must have the same digest, and the whole file the
  blob's, or the read fails;
* a blob that another process fetched while this one waited for the cache's lock.

The cache's fsync and rename are left to the thread: :meth:`StreamedBlob.finish` waits
for them. Memory stays bounded: the download runs at most :data:`AHEAD_BYTES` ahead of
the reader.
"""

from __future__ import annotations

import collections
import io
import logging
import threading
from collections.abc import Callable
from typing import BinaryIO

from .digest import Digest
from .errors import DigestMismatch
from .store import BlobCache
from .verify import VerifyingReader

log = logging.getLogger(__name__)

AHEAD_BYTES = 1 << 20
"""How far the download may run ahead of the reader (bytes): chunks handed over and not
yet read. One chunk more may be on its way (a read of the body, at most 256 KiB)."""

_PREFIX_READ = 1 << 20
"""Read size (bytes) when hashing what the handoff carried, after a restart."""


def _hash_head(f: BinaryIO, size: int, digest: Digest) -> tuple[int, str]:
    """Read up to ``size`` bytes of ``f`` from where it stands: how many there were, and
    their digest (hex, in ``digest``'s algorithm)."""
    hasher = digest.new_hash()
    left = size
    while left and (data := f.read(min(left, _PREFIX_READ))):
        hasher.update(data)
        left -= len(data)
    return size - left, hasher.hexdigest()


class _ReaderGone(Exception):
    """Internal: the reader closed the stream before the end; the fetch stops."""


class _Handoff:
    """Chunks from the fetch's thread to the reader's, in order, at most ``limit`` bytes
    of them waiting (the last one put may pass the limit)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._cond = threading.Condition()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiting = 0  # bytes handed over and not yet taken
        self._ended = False  # the fetch puts no more
        self.abandoned = False  # the reader takes no more

    def put(self, data: bytes) -> None:
        """Hand ``data`` (a bytes object nobody changes afterwards) over; waits while
        ``limit`` bytes wait already.

        Raises:
            _ReaderGone: the reader has abandoned the stream.
        """
        with self._cond:
            while self._waiting >= self._limit and not self.abandoned:
                self._cond.wait()
            if self.abandoned:
                raise _ReaderGone()
            self._chunks.append(data)
            self._waiting += len(data)
            self._cond.notify()

    def end(self) -> None:
        """No more chunks: :meth:`take` returns ``b""`` once the last is taken."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def abandon(self) -> None:
        """The reader stops: the chunks are dropped, and the fetch's next :meth:`put` raises."""
        with self._cond:
            self.abandoned = True
            self._chunks.clear()
            self._waiting = 0
            self._cond.notify_all()

    def take(self) -> bytes:
        """The next chunk, waiting for it; ``b""`` after the last."""
        with self._cond:
            while not self._chunks and not self._ended and not self.abandoned:
                self._cond.wait()
            if not self._chunks:
                return b""
            data = self._chunks.popleft()
            self._waiting -= len(data)
            self._cond.notify()
            return data


class _Tee:
    """The file the fetch writes into, as it sees it: the cache's temporary file
    (``dest``, set when the fetch starts), each chunk also handed to the reader until the
    fetch rewinds (a restart from 0). At the rewind, ``carried`` is set to the length and
    digest of what was handed over, hashed from ``dest``."""

    def __init__(self, handoff: _Handoff, digest: Digest) -> None:
        self.dest: BinaryIO | None = None
        self._handoff = handoff
        self._digest = digest
        self.diverted = False
        self.carried: tuple[int, str] | None = None

    def write(self, data: bytes) -> int:
        self._check_reader()
        assert self.dest is not None
        written = self.dest.write(data)
        if not self.diverted:
            self._handoff.put(bytes(data) if not isinstance(data, bytes) else data)
        return written

    def seek(self, offset: int, whence: int = 0) -> int:
        """A restart: what was handed over is no longer a prefix of what comes next."""
        assert self.dest is not None
        self._check_reader()
        if not self.diverted:
            self.diverted = True
            self._handoff.end()
            written = self.dest.tell()
            self.dest.seek(0)
            self.carried = _hash_head(self.dest, written, self._digest)
        return self.dest.seek(offset, whence)

    def _check_reader(self) -> None:
        if self._handoff.abandoned:
            raise _ReaderGone()

    def truncate(self, size: int | None = None) -> int:
        assert self.dest is not None
        return self.dest.truncate(size)

    def tell(self) -> int:
        assert self.dest is not None
        return self.dest.tell()

    def seekable(self) -> bool:
        return True


class StreamedBlob(io.RawIOBase):
    """A readable stream of a blob that a thread fetches into ``cache`` meanwhile.

    Every byte it returns is checked against ``digest`` (by the fetch, or as it is read
    from the cache) before it returns its end, so a :class:`~docker2aci.verify.VerifyingReader`
    over it does not hash it again (:attr:`verified_digest`). Reading it once closed
    raises ``ValueError``.

    Args:
        cache: the blob cache the blob goes into.
        digest: the blob's digest.
        fetch: writes the blob into the file it is given, verifying it
            (``RegistryClient.fetch_blob``), as :meth:`BlobCache.open` calls it.

    Raises (from ``read``): whatever the fetch raises (``DigestMismatch``,
    ``SizeMismatch``, ``RegistryError``, ``OutputError`` ...), at the end of the bytes
    it carried; ``DigestMismatch`` when a download restarted from 0 brought other bytes
    than the ones already read, or a blob another process cached is not what its digest
    says; ``OutputError`` when the rest must come from a cache that could not be written.
    """

    def __init__(self, cache: BlobCache, digest: Digest, fetch: Callable[[BinaryIO], None]) -> None:
        super().__init__()
        self._digest = digest
        self._handoff = _Handoff(AHEAD_BYTES)
        self._chunk = memoryview(b"")  # what is left of the chunk being read
        self._carrying = True  # chunks come from the handoff
        self._fetched = threading.Event()  # the fetch has ended, verified or not
        self._carried_all = False  # the handoff carried every byte of a verified blob
        self._fetch_error: BaseException | None = None  # the fetch failed: the blob is not what it should be
        self._cache_error: BaseException | None = None  # anything else (the cache could not be written)
        self._cached: BinaryIO | None = None  # the cached blob, open, when the rest is read from it
        self._rest: BinaryIO | None = None
        self._delivered = 0  # bytes handed over by the fetch and read
        self._tee = _Tee(self._handoff, digest)
        self._thread = threading.Thread(target=self._run, args=(cache, fetch, self._tee), daemon=True,
                                        name=f"docker2aci-fetch-{digest.hex[:12]}")
        self._thread.start()

    @property
    def verified_digest(self) -> Digest:
        """The digest every byte read is checked against (see the class)."""
        return self._digest

    def _run(self, cache: BlobCache, fetch: Callable[[BinaryIO], None], tee: _Tee) -> None:
        def fetch_tee(dest: BinaryIO) -> None:
            tee.dest = dest
            try:
                fetch(tee)  # type: ignore[arg-type]
                self._carried_all = not tee.diverted
            except BaseException as err:
                self._fetch_error = err
                raise
            finally:
                self._handoff.end()
                self._fetched.set()

        try:
            blob = cache.open(self._digest, fetch_tee)  # open: readable whatever removes it from the cache
        except BaseException as err:  # noqa: BLE001 (handed to the reader, or logged by finish())
            if self._fetch_error is None:
                self._cache_error = err
        else:
            if self._carried_all:
                blob.close()
            else:
                self._cached = blob
        finally:
            self._handoff.end()  # when fetch_tee never ran: the blob was there already
            self._fetched.set()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:  # its chunks are gone: an end here would be a short blob read as whole
            raise ValueError("read of a closed blob stream")
        view = memoryview(buffer).cast("B")
        if self._carrying:
            if not self._chunk:
                self._chunk = memoryview(self._handoff.take())
                if not self._chunk and self._handoff.abandoned:  # abandon(): the fetch's verdict is not awaited
                    raise ValueError("read of an abandoned blob stream")
            if self._chunk:
                n = min(len(view), len(self._chunk))
                view[:n] = self._chunk[:n]
                self._chunk = self._chunk[n:]
                self._delivered += n
                return n
            self._rest = self._end_of_carried()  # raises again at each read after a bad verdict
            self._carrying = False
        if self._rest is None:
            return 0
        return self._rest.readinto(view) or 0

    def _end_of_carried(self) -> BinaryIO | None:
        """At the end of the handed-over chunks: wait for the fetch's verdict; ``None``
        when the blob is complete, else the cached file, where the rest comes from,
        opened where the handoff stopped and hashed from its start."""
        self._fetched.wait()
        if self._fetch_error is not None:
            self._thread.join()  # done with the exception before it is raised here
            raise self._fetch_error
        if self._carried_all:
            return None
        self._thread.join()  # the rest comes from the cached file: wait until it is there
        if self._fetch_error is not None or self._cache_error is not None:
            raise self._fetch_error or self._cache_error  # type: ignore[misc]
        assert self._cached is not None
        # hashed as it is read: the fetch checked what it wrote, not what is on disk now
        rest = VerifyingReader(self._cached, self._digest, None, f"cached blob {self._digest}")
        self._cached = None  # closed with rest
        try:
            if self._tee.carried is None:  # another process fetched it: nothing was carried
                assert self._delivered == 0
                return rest  # type: ignore[return-value]
            size, carried = self._tee.carried
            got, again = _hash_head(rest, size, self._digest)  # type: ignore[arg-type]
            if got != self._delivered or again != carried:
                raise DigestMismatch(f"blob {self._digest} (its first {size} bytes, before the download "
                                     f"restarted from 0)", f"{self._digest.algorithm}:{again}",
                                     f"{self._digest.algorithm}:{carried}")
        except BaseException:
            rest.close()
            raise
        return rest  # type: ignore[return-value]

    def abandon(self) -> None:
        """Stop the reading from any thread (Ctrl-C, while another thread reads): a read
        waiting for the next chunk, and every later one, raises ``ValueError`` at once,
        and the fetch stops at its next chunk (nothing of it is cached). The reader
        still closes the stream."""
        self._handoff.abandon()

    @property
    def abandoned(self) -> bool:
        """Whether the reader stopped before the end (:meth:`abandon`, or :meth:`close`
        of a stream not read through): its fetch ends at its next chunk."""
        return self._handoff.abandoned and self._carrying

    def close(self) -> None:
        """Stop reading: an unfinished fetch is abandoned (nothing of it is cached)."""
        self._handoff.abandon()
        self._chunk = memoryview(b"")
        if self._rest is not None:
            self._rest.close()
        if self._cached is not None:
            self._cached.close()
        super().close()

    def finish(self, timeout: float | None = None) -> bool:
        """Wait until the blob is in the cache (or its fetch has failed), at most
        ``timeout`` seconds when given. A blob read in full whose cache copy could not be
        published is only logged: it was verified as it was read, and only a later run
        pays for it.

        Returns:
            Whether the fetch has ended (always true without ``timeout``).
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        if self.closed and self._cached is not None:  # opened after close(): never read
            self._cached.close()
        if self._carried_all and self._cache_error is not None:
            err = self._cache_error
            log.warning("%s: not cached: %s", self._digest,
                        (err.strerror or err) if isinstance(err, OSError) else err)
        return True
