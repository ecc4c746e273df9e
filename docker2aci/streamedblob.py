"""A blob read while it downloads into the blob cache.

A registry layer used to be downloaded into the cache whole, then read back from there
to be decompressed: two passes, one after the other, over the largest blobs. Here a
thread of its own fetches the blob into the cache (:meth:`BlobCache.ensure`, verified
as it is written) and hands every chunk, as it is written, to the reader through a pipe,
so the layer is decompressed while it downloads and the compressed bytes are read from
disk no more.

The pipe carries the bytes as they arrive; whatever it did not carry is read from the
cached file once the blob is there: the rest of a download that the server restarted
from 0 (the pipe stops at the restart; the reader, which checks the digest of what it
read, sees the same bytes again or fails), or a blob that another process fetched while
this one waited for the cache's lock. At the end of the pipe the reader waits for the
fetch's verdict: a blob that is not what its digest says raises there, never reads as
a clean end. The cache's fsync and rename are left to the thread: :meth:`StreamedBlob.finish`
waits for them.

Memory stays bounded by the pipe (:data:`PIPE_BYTES`): the download waits for the reader.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import threading
from collections.abc import Callable
from typing import BinaryIO

from .digest import Digest
from .store import BlobCache

log = logging.getLogger(__name__)

PIPE_BYTES = 1 << 20
"""The pipe's capacity (bytes), where the system allows it: the download runs at most this
far ahead of the reader."""


class _ReaderGone(Exception):
    """Internal: the reader closed the stream before the end; the fetch stops."""


class _Tee:
    """The file the fetch writes into, as it sees it: the cache's temporary file
    (``dest``, set when the fetch starts), each chunk also written into the pipe until
    the fetch rewinds (a restart from 0)."""

    def __init__(self, pipe: int) -> None:
        self.dest: BinaryIO | None = None
        self._pipe: int | None = pipe
        self.diverted = False
        self.cancelled = False  # the reader has closed: stop at the next write

    def write(self, data: bytes) -> int:
        if self.cancelled:
            raise _ReaderGone()
        assert self.dest is not None
        written = self.dest.write(data)
        if self._pipe is not None:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._pipe, view):]
            except BrokenPipeError as err:
                raise _ReaderGone() from err
        return written

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """A restart: what the pipe carried is no longer a prefix of what comes next."""
        self.diverted = True
        self.close_pipe()
        assert self.dest is not None
        return self.dest.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        assert self.dest is not None
        return self.dest.truncate(size)

    def tell(self) -> int:
        assert self.dest is not None
        return self.dest.tell()

    def seekable(self) -> bool:
        return True

    def close_pipe(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None


class StreamedBlob(io.RawIOBase):
    """A readable stream of a blob that a thread fetches into ``cache`` meanwhile.

    Args:
        cache: the blob cache the blob goes into.
        digest: the blob's digest.
        fetch: writes the blob into the file it is given, verifying it
            (``RegistryClient.fetch_blob``), as :meth:`BlobCache.ensure` calls it.

    Raises (from ``read``): whatever the fetch raises (``DigestMismatch``,
    ``SizeMismatch``, ``RegistryError``, ``OutputError`` ...), at the end of the bytes
    it carried; ``OutputError`` when the rest must come from a cache that could not be
    written.
    """

    def __init__(self, cache: BlobCache, digest: Digest, fetch: Callable[[BinaryIO], None]) -> None:
        super().__init__()
        self._digest = digest
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._pipe: int | None = read_end
        self._fetched = threading.Event()  # the fetch has ended, verified or not
        self._carried_all = False  # the pipe carried every byte of a verified blob
        self._fetch_error: BaseException | None = None  # the fetch failed: the blob is not what it should be
        self._cache_error: BaseException | None = None  # anything else (the cache could not be written)
        self._path: str | None = None
        self._rest: BinaryIO | None = None
        self._delivered = 0
        self._tee = _Tee(write_end)
        self._thread = threading.Thread(target=self._run, args=(cache, fetch, self._tee), daemon=True,
                                        name=f"docker2aci-fetch-{digest.hex[:12]}")
        try:
            self._thread.start()
        except BaseException:
            self._tee.close_pipe()
            os.close(read_end)
            raise

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
                tee.close_pipe()
                self._fetched.set()

        try:
            self._path = cache.ensure(self._digest, fetch_tee)
        except BaseException as err:  # noqa: BLE001 (handed to the reader, or logged by finish())
            if self._fetch_error is None:
                self._cache_error = err
        finally:
            tee.close_pipe()  # when fetch_tee never ran: the blob was there already
            self._fetched.set()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._rest is None:
            if self._pipe is not None:
                n = os.readv(self._pipe, [view])
                if n:
                    self._delivered += n
                    return n
                os.close(self._pipe)
                self._pipe = None
            self._fetched.wait()
            if self._fetch_error is not None:
                self._thread.join()  # done with the exception before it is raised here
                raise self._fetch_error
            if self._carried_all:
                return 0
            self._thread.join()  # the rest comes from the cached file: wait until it is there
            if self._fetch_error is not None or self._cache_error is not None:
                raise self._fetch_error or self._cache_error  # type: ignore[misc]
            assert self._path is not None
            self._rest = open(self._path, "rb")  # noqa: SIM115 (closed by close())
            self._rest.seek(self._delivered)
        n = self._rest.readinto(view)
        self._delivered += n
        return n

    def close(self) -> None:
        """Stop reading: an unfinished fetch is abandoned (nothing of it is cached)."""
        self._tee.cancelled = True
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if self._rest is not None:
            self._rest.close()
        super().close()

    def finish(self) -> None:
        """Wait until the blob is in the cache (or its fetch has failed). A blob read in
        full whose cache copy could not be published is only logged: it was verified as
        it was read, and only a later run pays for it."""
        self._thread.join()
        if self._carried_all and self._cache_error is not None:
            log.warning("%s: not cached: %s", self._digest, self._cache_error)
