"""Layer blobs → verified, uncompressed, seekable layer tars.

Each layer blob is read once through a :class:`VerifyingReader` (its digest and size),
decompressed according to its magic bytes (gzip, zstd, bzip2, xz, or a plain tar),
hashed again against the config's ``diff_id`` and spooled to a temporary file, which
the squash then reads with random access. The uncompressed size of each layer is counted
as it streams and capped (``max_size``, :data:`docker2aci.limits.DEFAULT_MAX_LAYER_BYTES`):
a decompression bomb is refused with :class:`LimitExceeded` before the cap is passed. A plain tar that already sits in a seekable
local file (a ``docker save`` member, an OCI layout blob) is not copied: the squash reads
it in place (:func:`open_in_place`) while :func:`verify_layer` checks it. Nothing is held
in memory whole.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import io
import logging
import lzma
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, BinaryIO, Protocol

from isal import isal_zlib

from converters.errors import BadLayer, UnsafeEntry
from converters.rootfs import LayerTar

from .atomic import anonymous_file
from .digest import Digest
from .errors import (
    DigestMismatch,
    InvalidLayer,
    LimitExceeded,
    OutputError,
    SizeMismatch,
    UnsupportedMediaType,
)
from .layerblob import LayerBlob
from .limits import DEFAULT_MAX_LAYER_BYTES
from .mediatypes import layer_encoding
from .verify import VerifyingReader
from .writebehind import WriteBehind

log = logging.getLogger(__name__)

CHUNK = 1 << 20
"""Read size for layer streams (bytes)."""
MAX_PARALLEL_LAYERS = 4
"""Layers read, verified and decompressed at once."""
VERIFY_CHUNK = 4 << 20
"""Read size when verifying a layer read in place (bytes), see :func:`verify_layer`."""
WRITE_BEHIND_CHUNKS = 4
"""Decompressed chunks (each at most :data:`CHUNK` bytes) waiting to be hashed and
written at most; with the one being written and the one the decompressor holds, a
layer's pipeline holds at most 6 MiB."""

# The first bytes of a stream or member (RFC 1952 section 2.3.1, RFC 8878 section 3.1.1,
# bzip2's "BZh", the xz file format 1.0.4 section 2.1.1.1): what follows a member is the
# next one only if it starts so.
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


def _too_big(what: str, limit: int, kind: str = "layer") -> LimitExceeded:
    return LimitExceeded(f"{what}: the uncompressed {kind} is larger than the {limit}-byte limit "
                         f"(--max-layer-size); refused as a possible decompression bomb")


class _Decompressor(Protocol):
    """zlib's decompressobj, bz2's and lzma's decompressors: all take a max length."""

    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def sniff_encoding(head: bytes, what: str) -> str:
    """Name the encoding of a layer blob from its first bytes (at least 512 when available).

    Returns:
        ``gzip``, ``zstd``, ``bzip2``, ``xz``, ``tar``, or ``empty``.

    Raises:
        UnsupportedMediaType: the bytes are neither a known compression nor a tar.
    """
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if not head:
        return "empty"
    block = head[:512]
    if len(block) == 512:
        if block == bytes(512):
            return "tar"
        try:
            tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            return "tar"
        except tarfile.HeaderError:
            pass
    raise UnsupportedMediaType(what, "unknown layer encoding (not gzip, zstd, bzip2, xz or tar)")


def _decompressor(encoding: str) -> _Decompressor:
    if encoding == "gzip":
        return isal_zlib.decompressobj(wbits=31)  # ISA-L: about 3x zlib's speed, same API
    if encoding == "bzip2":
        return bz2.BZ2Decompressor()
    if encoding == "xz":
        return lzma.LZMADecompressor()
    raise ValueError(encoding)


def _bounded(dec: _Decompressor, data: bytes) -> Iterator[bytes]:
    """The output of ``dec`` for ``data``, at most :data:`CHUNK` bytes at a time, so a
    decompression bomb never sits in memory."""
    is_zlib = hasattr(dec, "unconsumed_tail")
    while True:
        if is_zlib:
            out = dec.decompress(data, CHUNK)
            data = dec.unconsumed_tail  # type: ignore[attr-defined]
            more = bool(data) or len(out) == CHUNK
        else:
            out = dec.decompress(data, max_length=CHUNK)  # type: ignore[call-arg]
            data = b""
            more = not dec.eof and not dec.needs_input  # type: ignore[attr-defined]
        if out:
            yield out
        if dec.eof or not more:  # type: ignore[attr-defined]
            return


def decompress_into(stream: BinaryIO, encoding: str, out: IO[bytes], hasher: object, what: str,
                    limit: int | None = None, kind: str = "layer") -> None:
    """Decompress ``stream`` into ``out``, updating ``hasher`` with the plain bytes.

    Memory stays bounded, whatever the compression ratio, by ``WRITE_BEHIND_CHUNKS + 2``
    chunks of :data:`CHUNK` bytes (the plain bytes are hashed and written by a thread of
    their own, a :class:`~docker2aci.writebehind.WriteBehind`), and ``out``
    never receives more than ``limit`` bytes: the chunk that would pass it is refused
    before it is written. Concatenated members (gzip, bzip2, xz) are read in turn; zero
    padding after the last is accepted (and xz's Stream Padding, zeros in fours, between
    streams), anything else that does not start as a member is "trailing garbage"
    (however short), and a member cut short is "truncated".

    Args:
        stream: the compressed bytes.
        encoding: ``gzip``, ``zstd``, ``bzip2``, ``xz`` or ``plain`` (see :func:`sniff_encoding`).
        out: where the plain bytes go (flushed at the end).
        hasher: a hashlib-like object updated with the plain bytes.
        what: names the stream in errors (a layer's :attr:`~LayerBlob.label`, an archive).
        limit: the most plain bytes accepted, or ``None`` for no cap.
        kind: what the stream is, in messages (``layer``, ``archive``).

    Raises:
        InvalidLayer: the compressed stream is corrupt or truncated.
        LimitExceeded: the plain bytes are more than ``limit``.
        OutputError: ``out`` cannot be written (a full disk).
    """
    written = 0

    def output_error(err: BaseException) -> BaseException:
        if not isinstance(err, OSError):
            return err
        where = getattr(out, "name", None)
        into = f" into {where}" if isinstance(where, str) else ""
        return OutputError(f"{what}: writing the uncompressed {kind}{into}: {err.strerror or err}")

    behind = WriteBehind(hasher.update, out.write, WRITE_BEHIND_CHUNKS, output_error)  # type: ignore[attr-defined]

    def emit(data: bytes) -> None:
        nonlocal written
        written += len(data)
        if limit is not None and written > limit:
            raise _too_big(what, limit, kind)
        behind.put(data)

    try:
        _decompress(stream, encoding, emit, what)
        behind.finish()
        try:
            out.flush()
        except OSError as err:
            raise output_error(err) from err
    except BaseException as err:
        behind.abandon()
        if isinstance(err, Exception):
            behind.raise_error()  # a write that failed on an earlier chunk is the first error
        raise


def _decompress(stream: BinaryIO, encoding: str, emit: Callable[[bytes], None], what: str) -> None:
    """Decompress ``stream`` (``encoding``) and hand the plain bytes to ``emit``, at most
    :data:`CHUNK` at a time (see :func:`decompress_into`)."""
    if encoding == "plain":
        while chunk := stream.read(CHUNK):
            emit(chunk)
        return
    if encoding == "zstd":
        import zstandard  # only for zstd layers: it imports `platform` (6 ms) for every conversion otherwise

        frames = ZstdFrames(stream)
        reader = zstandard.ZstdDecompressor().stream_reader(frames, read_across_frames=True, closefd=False)
        try:
            while chunk := reader.read(CHUNK):
                emit(chunk)
        except zstandard.ZstdError as err:
            raise InvalidLayer(what, None, f"zstd stream is corrupt: {err}") from err
        if (problem := frames.problem()) is not None:
            raise InvalidLayer(what, None, f"zstd stream is {problem}")
        return
    magic = next(magic for magic, name in _MAGIC if name == encoding)
    garbage = "trailing garbage after the compressed stream"
    dec: _Decompressor | None = _decompressor(encoding)
    after = b""  # between members: what follows the last one, until it shows a magic or garbage
    padding = 0  # zero bytes since the last member: at the end; for xz between streams too, in fours
    try:
        while chunk := stream.read(CHUNK):
            while chunk:
                if dec is None:
                    after, chunk = after + chunk, b""
                    if padding or after[:1] == b"\x00":
                        rest = after.lstrip(b"\x00")
                        padding, after = padding + len(after) - len(rest), rest
                        if not after:
                            continue
                        if encoding != "xz" or padding % 4:  # xz's Stream Padding (xz file format 2.2)
                            raise zlib.error(garbage)
                        padding = 0
                    if not magic.startswith(after[:len(magic)]):
                        raise zlib.error(garbage)
                    if len(after) >= len(magic):
                        dec, chunk, after = _decompressor(encoding), after, b""  # the next member
                    continue
                for data in _bounded(dec, chunk):
                    emit(data)
                chunk = b""
                if dec.eof:  # type: ignore[attr-defined]
                    dec, chunk = None, dec.unused_data  # type: ignore[attr-defined]
        if (dec is not None and not dec.eof) or after:  # type: ignore[attr-defined]
            raise InvalidLayer(what, None, f"{encoding} stream is truncated")
    except (zlib.error, isal_zlib.error, OSError, lzma.LZMAError, EOFError) as err:
        raise InvalidLayer(what, None, f"{encoding} stream is corrupt: {err}") from err


class ZstdFrames:
    """A zstd stream as it is read, followed through its frames (RFC 8878 section 3.1:
    frames of blocks, skippable frames) without decompressing them, to tell a stream
    that ends between frames from one cut inside a frame: python-zstandard's reader
    ends quietly either way, with the output so far.

    Args:
        stream: the compressed bytes; :meth:`read` passes them on.
    """

    _ZSTD_MAGIC = 0xFD2FB528
    _SKIPPABLE = range(0x184D2A50, 0x184D2A60)

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._state = "magic"  # the header being read: magic, frame, block, skippable; or bad
        self._need = 4  # its length (bytes)
        self._head = bytearray()
        self._skip = 0  # bytes of content to pass over before it
        self._checksum = False
        self._frames = 0
        self._offset = 0
        self._bad_at = -1

    def read(self, size: int = -1) -> bytes:
        """Read from the stream, following what passes."""
        data = self._stream.read(size)
        self._follow(data)
        return data

    def problem(self) -> str | None:
        """At the end of the stream: ``None`` when it ended after a whole frame, else what
        is wrong (``truncated``, ``not a zstd frame at byte N``)."""
        if self._state == "bad":
            return f"corrupt: not a zstd frame at byte {self._bad_at}"
        if self._frames == 0 or self._state != "magic" or self._head or self._skip:
            return "truncated"
        return None

    def _follow(self, data: bytes) -> None:
        view, at = memoryview(data), 0
        while at < len(view) and self._state != "bad":
            if self._skip:
                step = min(self._skip, len(view) - at)
                self._skip -= step
                at += step
                continue
            take = min(self._need - len(self._head), len(view) - at)
            self._head += view[at:at + take]
            at += take
            if len(self._head) == self._need:
                self._header(bytes(self._head), self._offset + at - self._need)
                self._head.clear()
        self._offset += len(view)

    def _header(self, head: bytes, where: int) -> None:
        if self._state == "magic":
            magic = int.from_bytes(head, "little")
            if magic == self._ZSTD_MAGIC:
                self._state, self._need = "frame", 1
            elif magic in self._SKIPPABLE:
                self._state, self._need = "skippable", 4
            else:
                self._state, self._bad_at = "bad", where
        elif self._state == "frame":  # the frame header descriptor; the rest of the header is skipped
            descriptor = head[0]
            single_segment = descriptor >> 5 & 1
            self._checksum = bool(descriptor >> 2 & 1)
            self._skip = ((0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
                          + (single_segment, 2, 4, 8)[descriptor >> 6])
            self._state, self._need = "block", 3
        elif self._state == "block":
            header = int.from_bytes(head, "little")
            kind, size = header >> 1 & 3, header >> 3
            if kind == 3:  # reserved
                self._state, self._bad_at = "bad", where
                return
            self._skip = 1 if kind == 1 else size  # an RLE block holds one byte
            if header & 1:  # the last block, then the content checksum
                self._skip += 4 if self._checksum else 0
                self._frames += 1
                self._state, self._need = "magic", 4
        else:  # skippable: its size, then its content
            self._skip = int.from_bytes(head, "little")
            self._frames += 1
            self._state, self._need = "magic", 4


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


class _NoHash:
    """Stands in for a hash nobody will read."""

    def update(self, data: bytes | memoryview, /) -> None:
        pass

    def hexdigest(self) -> str:
        raise AssertionError("not hashed")


_NO_HASH = _NoHash()


def open_in_place(blob: LayerBlob) -> BinaryIO | None:
    """Open a layer for the squash to read in place, without a spool copy.

    Only a blob of a local source (one with no cache to evict) whose stream is seekable
    and whose bytes are a plain tar qualifies: a ``docker save`` member or an
    uncompressed OCI layout blob. The caller must run :func:`verify_layer` on the blob
    and use nothing read from the stream before it has passed.

    Returns:
        the stream positioned at 0 (positions are the layer tar's own), or ``None``
        when the layer must be spooled (:func:`spool_layer`).

    Raises:
        SourceError, ImageNotFound: the blob cannot be opened.
        LimitExceeded: the plain tar is larger than ``blob.max_size``.
    """
    if blob.evict is not None:
        return None
    stream = blob.open()
    try:
        if stream.seekable():
            head = stream.read(512)
            end = stream.seek(0, io.SEEK_END)
            stream.seek(0)
            if _plain_tar(head):
                if blob.max_size is not None and end > blob.max_size:
                    stream.close()
                    raise _too_big(blob.label, blob.max_size)
                return stream
    except OSError:
        pass
    stream.close()
    return None


def _plain_tar(head: bytes) -> bool:
    try:
        return sniff_encoding(head, "") in ("tar", "empty")
    except UnsupportedMediaType:
        return False


def verify_layer(blob: LayerBlob) -> None:
    """Check a layer read in place (:func:`open_in_place`): its size, digest and diff ID.

    Reads in :data:`VERIFY_CHUNK` blocks, so that the hashing (which releases the GIL)
    runs in long stretches beside the squash's header parsing on the main thread.

    Raises:
        DigestMismatch, SizeMismatch: the blob or its tar is not what the manifest and
            config say.
        LimitExceeded: the tar is larger than ``blob.max_size``.
        InvalidLayer: the source file cannot be read (an I/O error), naming the layer.
    """
    try:
        _verify_in_place(blob)
    except OSError as err:
        raise InvalidLayer(blob.label, None, f"cannot be read: {err}") from err


def _verify_in_place(blob: LayerBlob) -> None:
    diff_hash: _Hasher = _NO_HASH
    if blob.diff_id is not None and blob.diff_id != blob.digest:
        diff_hash = blob.diff_id.new_hash()
    buffer = bytearray(VERIFY_CHUNK)
    read = 0
    with VerifyingReader(blob.open(), blob.digest, blob.size, blob.label) as raw:
        while n := raw.readinto(buffer):
            read += n
            if blob.max_size is not None and read > blob.max_size:
                raise _too_big(blob.label, blob.max_size)
            diff_hash.update(memoryview(buffer)[:n])
    _check_diff_id(blob, diff_hash)


def spool_layer(blob: LayerBlob, out: IO[bytes]) -> None:
    """Verify, decompress and write one layer's uncompressed tar into ``out``.

    Args:
        blob: the layer to read.
        out: a writable binary file (a temporary file) that receives the plain tar.

    Raises:
        DigestMismatch, SizeMismatch: the blob or its uncompressed tar is not what the
            manifest and config say (``diff_ids``).
        UnsupportedMediaType: unknown encoding.
        InvalidLayer: the compressed stream is corrupt.
        LimitExceeded: the uncompressed tar is larger than ``blob.max_size``; the spool
            then holds at most that many bytes.
    """
    with VerifyingReader(blob.open(), blob.digest, blob.size, blob.label) as raw:
        try:
            buffered = io.BufferedReader(raw, CHUNK)
            encoding = sniff_encoding(buffered.peek(512)[:512], blob.label)
            if encoding in ("tar", "empty"):
                encoding = "plain"
            # An uncompressed blob whose digest is its diff ID is hashed once, as the blob
            hashes_twice = blob.diff_id is not None and not (encoding == "plain" and blob.diff_id == blob.digest)
            hasher: _Hasher = blob.diff_id.new_hash() if hashes_twice and blob.diff_id else _NO_HASH
            declared = layer_encoding(blob.media_type) if blob.media_type else None
            if declared is not None and declared != encoding:
                log.warning("%s: media type %s says %s but the bytes are %s; using the bytes",
                            blob.label, blob.media_type, declared, encoding)
            decompress_into(buffered, encoding, out, hasher, blob.label, blob.max_size)
        except (UnsupportedMediaType, InvalidLayer):
            raw.drain()  # a blob that is not what its digest says is reported as that
            raise
        raw.drain()
    _check_diff_id(blob, hasher)


def _check_diff_id(blob: LayerBlob, hasher: _Hasher) -> None:
    """Compare the uncompressed tar's hash with the config's diff ID (when both exist).

    Raises:
        DigestMismatch: they differ (names the layer and its ``rootfs.diff_ids`` entry).
    """
    if blob.diff_id is not None and hasher is not _NO_HASH:
        actual_id = Digest(blob.diff_id.algorithm, hasher.hexdigest())
        if actual_id != blob.diff_id:
            field = "rootfs.diff_ids" + (f"[{blob.index}]" if blob.index is not None else "")
            raise DigestMismatch(f"{blob.label}, diff ID (config {field})", str(blob.diff_id), str(actual_id))


class _Stoppable(io.RawIOBase):
    """A layer's stream read by a thread of :func:`open_layers`, which the main thread
    stops on Ctrl-C or ``SIGTERM`` (:meth:`stop`): the read in progress, or the next,
    raises ``KeyboardInterrupt`` in the reading thread; a registry blob waiting for its
    next chunk is abandoned (:meth:`~docker2aci.streamedblob.StreamedBlob.abandon`), so
    the read does not wait for it. Its ``verified_digest`` is the stream's (see
    :class:`~docker2aci.verify.VerifyingReader`)."""

    def __init__(self, stream: BinaryIO, stopped: threading.Event) -> None:
        super().__init__()
        self._stream = stream
        self._stopped = stopped
        self.verified_digest = getattr(stream, "verified_digest", None)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._stopped.is_set():
            raise KeyboardInterrupt
        try:
            return self._stream.readinto(buffer) or 0  # type: ignore[attr-defined]
        except Exception:
            if self._stopped.is_set():  # an abandoned blob's read: the stop, not its error
                raise KeyboardInterrupt from None
            raise

    def stop(self) -> None:
        """Called from another thread: see the class."""
        abandon = getattr(self._stream, "abandon", None)
        if abandon is not None:
            abandon()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()


Progress = Callable[[str, int, "int | None"], None]
"""``progress(task, done, total)``, as the pipeline's progress hook."""


@dataclass
class OpenedLayers:
    """The layer tars of one conversion, base first, and the checks still running on the
    layers read in place.

    Attributes:
        tars: one seekable tar per layer: a spool, or the source's own file.
        pending: verifications of in-place layers (see :func:`docker2aci.layers.open_in_place`).
        progress: called as ``progress("layers", done, total)``.
    """

    tars: list[LayerTar]
    pending: list[Future[None]]
    progress: Progress | None
    done: int = 0
    _failure: Exception | None = field(default=None, repr=False)

    def count(self) -> None:
        """One more layer is ready (reported to the progress hook)."""
        self.done += 1
        if self.progress:
            self.progress("layers", self.done, len(self.tars))

    def verified(self) -> None:
        """Wait until every layer read in place has passed its digest checks.

        Raises:
            DigestMismatch, SizeMismatch, InvalidLayer: a layer is not what the manifest
                and config say.
        """
        if self._failure is not None:
            raise self._failure  # the first bad layer stays the one reported
        while self.pending:
            try:
                self.pending.pop(0).result()
            except Exception as err:
                for later in self.pending:
                    later.cancel()  # those not started yet: no use hashing them now
                self._failure = err
                raise
            self.count()

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Report the squash's complaints about a layer as :class:`InvalidLayer`, unless
        a layer is not what its digest says, which is reported as that first; any other
        error (a layer read in place that ends early fails the write) also waits for the
        digest checks, whose error wins."""
        try:
            yield
        except UnsafeEntry as err:
            self.verified()
            raise InvalidLayer(err.layer, err.entry, err.message) from err
        except BadLayer as err:
            self.verified()
            raise InvalidLayer(err.layer, None, err.message) from err
        except Exception:
            self.verified()
            raise


@contextlib.contextmanager
def open_layers(blobs: list[LayerBlob], tmp_dir: str | None, progress: Progress | None,
                max_layer_size: int | None = DEFAULT_MAX_LAYER_BYTES) -> Iterator[OpenedLayers]:
    """Open every layer as a seekable tar, in parallel: a plain tar in a local file is
    read in place and verified in the background (:meth:`OpenedLayers.verified`); any
    other layer is verified and decompressed into a spool before this yields: a file
    without a name in ``tmp_dir`` (:func:`~docker2aci.atomic.anonymous_file`), which
    the kernel frees even when the process is killed.

    Args:
        blobs: the image's layers, base first.
        tmp_dir: where the spools go (default: the system's temporary directory).
        progress: called as ``progress("layers", done, total)``.
        max_layer_size: the largest uncompressed size of one layer (bytes), counted while
            it streams; ``None`` for no cap (tests only).

    Raises:
        OutputError: a spool cannot be made or written.
        LimitExceeded: a layer is larger than ``max_layer_size`` uncompressed (its
            spool is removed with the others).
        DigestMismatch, SizeMismatch, InvalidLayer, UnsupportedMediaType: a spooled layer
            is bad (layers read in place raise from :meth:`OpenedLayers.verified`).
    """
    if max_layer_size is not None:
        blobs = [dataclasses.replace(b, max_size=max_layer_size) for b in blobs]
    stopped = threading.Event()  # Ctrl-C, SIGTERM: the layers being read stop at their next chunk
    streams: list[_Stoppable] = []

    def stoppable(blob: LayerBlob) -> LayerBlob:
        def opened() -> BinaryIO:
            stream = _Stoppable(blob.open(), stopped)
            streams.append(stream)
            return stream  # type: ignore[return-value]

        return dataclasses.replace(blob, open=opened)

    files: list[BinaryIO] = []
    pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_LAYERS, len(blobs)))
    verifier = ThreadPoolExecutor(max_workers=1)  # one layer at a time: hashing is fast, memory is not free
    try:
        read = [stoppable(b) for b in blobs]  # in place, the main thread reads the source's own stream

        def spool(i: int) -> None:
            try:
                spool_layer(read[i], files[i])
            except (DigestMismatch, SizeMismatch) as err:
                evict = blobs[i].evict
                if evict is None:
                    raise
                log.warning("%s: the cached copy is damaged (%s); fetching it again", blobs[i].what, err)
                evict()
                files[i].seek(0)
                files[i].truncate()
                spool_layer(read[i], files[i])

        spooling, pending = [], []
        for i, blob in enumerate(blobs):
            in_place = open_in_place(blob)
            if in_place is not None:
                files.append(in_place)
                pending.append(verifier.submit(verify_layer, read[i]))
            else:
                files.append(anonymous_file(tmp_dir, f"the spool of {blob.label}"))  # nothing left, even by a kill
                spooling.append(pool.submit(spool, i))
        layers = OpenedLayers([LayerTar(b.label, f) for b, f in zip(blobs, files)], pending, progress)
        for future in spooling:
            future.result()
            layers.count()
        yield layers
    except BaseException as err:
        if not isinstance(err, Exception):  # Ctrl-C, SIGTERM: not a wait for whole downloads
            stopped.set()
            for stream in list(streams):
                stream.stop()
        raise
    finally:  # on an error, layers not started yet are not read; running ones end first
        verifier.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)
        for f in files:
            with contextlib.suppress(OSError):  # a full disk: the error that matters is already raised
                f.close()
