"""A layer read while it downloads into the blob cache (docker2aci.streamedblob), against
the real registry, with the fault proxy for cuts and restarts.

The layer is an 8 MiB tar of random bytes (gzip), built here and pushed by skopeo: larger
than the handoff holds (AHEAD_BYTES), so the download really waits for the reader.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import layerbuild as lb
import pytest
from faultproxy import Fault, FaultProxy
from registry_setup import FAST_RETRY
from services import RunningRegistry, push

from docker2aci.digest import Digest
from docker2aci.errors import DigestMismatch
from docker2aci.registry import RegistryClient
from docker2aci.store import BlobCache, gc_cache
from docker2aci.streamedblob import AHEAD_BYTES, StreamedBlob
from docker2aci.verify import VerifyingReader

pytestmark = pytest.mark.tools

REPO = "test/streamed"


@pytest.fixture(scope="module")
def big_blob(plain_registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> tuple[Digest, bytes]:
    """An 8 MiB random layer pushed to the plain registry: its digest and stored bytes."""
    layer = lb.Layer(lb.tar_bytes([lb.file("random.bin", os.urandom(8 << 20))]))
    layout = lb.write_oci_layout(tmp_path_factory.mktemp("streamed") / "layout", [layer])
    push(f"oci:{layout.path}:latest", plain_registry, f"{REPO}:latest")
    [digest] = layout.layer_digests
    return Digest.parse(digest), layout.blob(digest).read_bytes()


def _fetcher(proxy: FaultProxy, digest: Digest, size: int) -> Callable[[BinaryIO], None]:
    def fetch(dest: BinaryIO) -> None:
        with RegistryClient(proxy.host, allow_http=True, retry=FAST_RETRY) as client:
            client.fetch_blob(REPO, digest, size, dest)
    return fetch


def _blob_gets(proxy: FaultProxy) -> list[dict[str, str]]:
    return [r.headers for r in proxy.requests if "/blobs/" in r.path]


def _read_all(stream: StreamedBlob) -> bytes:
    chunks = []
    while chunk := stream.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _leftovers(cache: Path) -> list[str]:
    return sorted(os.listdir(cache / "tmp")) if (cache / "tmp").exists() else []


def test_the_reader_gets_the_bytes_as_they_download_and_the_blob_lands_in_the_cache(
        fault_proxy: FaultProxy, big_blob: tuple[Digest, bytes], tmp_path: Path) -> None:
    digest, data = big_blob
    cache = BlobCache(str(tmp_path / "cache"))
    stream = StreamedBlob(cache, digest, _fetcher(fault_proxy, digest, len(data)))
    first = stream.read(AHEAD_BYTES)
    assert first and not cache.has(digest)  # read before the download has ended
    assert first + _read_all(stream) == data
    stream.close()
    stream.finish()
    assert Path(cache.path(digest)).read_bytes() == data
    assert _leftovers(tmp_path / "cache") == [] and len(_blob_gets(fault_proxy)) == 1


def test_a_resumed_download_carries_on_in_the_handoff(fault_proxy: FaultProxy, big_blob: tuple[Digest, bytes],
                                                   tmp_path: Path) -> None:
    digest, data = big_blob
    fault_proxy.add(Fault.cut(len(data) // 3))
    cache = BlobCache(str(tmp_path / "cache"))
    stream = StreamedBlob(cache, digest, _fetcher(fault_proxy, digest, len(data)))
    assert _read_all(stream) == data
    stream.finish()
    assert [h.get("range") for h in _blob_gets(fault_proxy)] == [None, f"bytes={len(data) // 3}-"]
    assert cache.has(digest)


def test_a_download_restarted_from_zero_is_read_on_from_the_cache(fault_proxy: FaultProxy,
                                                                  big_blob: tuple[Digest, bytes],
                                                                  tmp_path: Path) -> None:
    """The server answers the ranged retry with the whole blob (200): the handoff stops, and
    the reader takes the rest from the cached file once it is there."""
    digest, data = big_blob
    fault_proxy.add(Fault.cut(len(data) // 2), Fault.strip_range())
    cache = BlobCache(str(tmp_path / "cache"))
    stream = StreamedBlob(cache, digest, _fetcher(fault_proxy, digest, len(data)))
    assert _read_all(stream) == data
    stream.finish()
    assert len(_blob_gets(fault_proxy)) == 2
    assert Path(cache.path(digest)).read_bytes() == data


def test_a_corrupt_blob_raises_at_the_end_and_is_not_cached(fault_proxy: FaultProxy,
                                                            big_blob: tuple[Digest, bytes], tmp_path: Path) -> None:
    digest, data = big_blob
    fault_proxy.add(Fault.corrupt())
    cache = BlobCache(str(tmp_path / "cache"))
    stream = StreamedBlob(cache, digest, _fetcher(fault_proxy, digest, len(data)))
    with pytest.raises(DigestMismatch):
        _read_all(stream)
    stream.finish()
    assert not cache.has(digest) and _leftovers(tmp_path / "cache") == []


def test_a_reader_that_stops_early_abandons_the_download(fault_proxy: FaultProxy,
                                                         big_blob: tuple[Digest, bytes], tmp_path: Path) -> None:
    digest, data = big_blob
    cache = BlobCache(str(tmp_path / "cache"))
    stream = StreamedBlob(cache, digest, _fetcher(fault_proxy, digest, len(data)))
    assert stream.read(4096) == data[:4096]
    stream.close()
    assert stream.finish(timeout=60), "the download went on after the reader closed the stream"
    assert not cache.has(digest) and _leftovers(tmp_path / "cache") == []


def _started_while_another_fetch_holds_the_lock(cache: BlobCache, digest: Digest,
                                                fetch: Callable[[BinaryIO], None]) -> StreamedBlob:
    """A stream of ``digest`` started while another fetch of it (``fetch``, in a thread)
    holds the cache's lock; returned once that fetch has put the blob in the cache."""
    holding, release = threading.Event(), threading.Event()

    def slow_fetch(dest: BinaryIO) -> None:
        holding.set()
        release.wait(30)
        fetch(dest)

    other = threading.Thread(target=lambda: cache.open(digest, slow_fetch).close())
    other.start()
    assert holding.wait(30)
    stream = StreamedBlob(cache, digest, fetch)
    release.set()
    other.join()
    return stream


def test_a_blob_another_fetch_put_in_the_cache_meanwhile_is_read_from_there(
        fault_proxy: FaultProxy, big_blob: tuple[Digest, bytes], tmp_path: Path) -> None:
    """While another fetch of the same blob holds the cache's lock, the stream waits; the
    blob is then read from the cache, and fetched once in all."""
    digest, data = big_blob
    cache = BlobCache(str(tmp_path / "cache"))
    stream = _started_while_another_fetch_holds_the_lock(cache, digest, _fetcher(fault_proxy, digest, len(data)))
    got = _read_all(stream)
    stream.finish()
    assert hashlib.sha256(got).hexdigest() == digest.hex
    assert len(_blob_gets(fault_proxy)) == 1


def test_a_blob_another_fetch_put_in_the_cache_is_read_after_gc_removed_it(
        fault_proxy: FaultProxy, big_blob: tuple[Digest, bytes], tmp_path: Path) -> None:
    """The stream found the blob cached by another fetch and was to open it when read: a gc
    in between (no grace) removed it, and the read failed (No such file). The cached blob
    is now opened under its lock, which gc needs to remove it."""
    digest, data = big_blob
    cache = BlobCache(str(tmp_path / "cache"))
    stream = _started_while_another_fetch_holds_the_lock(cache, digest, _fetcher(fault_proxy, digest, len(data)))
    assert stream.finish(30)  # it found the blob cached, and read nothing yet
    assert gc_cache(cache.root, 0.0).blobs_removed == [str(digest)] and not cache.has(digest)
    assert hashlib.sha256(_read_all(stream)).hexdigest() == digest.hex
    stream.close()
    assert len(_blob_gets(fault_proxy)) == 1


def test_a_restart_that_brings_other_first_bytes_fails_the_read(fault_proxy: FaultProxy,
                                                                 big_blob: tuple[Digest, bytes],
                                                                 tmp_path: Path) -> None:
    """The first answer has a flipped byte before its cut, the restarted one (200) is
    right: the blob is cached, but the reader, who already had the flipped byte, fails."""
    digest, data = big_blob
    fault_proxy.add(Fault.corrupt(times=1), Fault.cut(3 * len(data) // 4), Fault.strip_range())
    cache = BlobCache(str(tmp_path / "cache"))
    stream = StreamedBlob(cache, digest, _fetcher(fault_proxy, digest, len(data)))
    with pytest.raises(DigestMismatch, match="before the download restarted from 0"):
        _read_all(stream)
    stream.close()
    stream.finish()
    assert len(_blob_gets(fault_proxy)) == 2
    assert Path(cache.path(digest)).read_bytes() == data


def test_a_bad_blob_another_process_cached_meanwhile_fails_the_read(big_blob: tuple[Digest, bytes],
                                                                     tmp_path: Path) -> None:
    """What another process put in the cache is checked as it is read (the stream's bytes
    are not hashed again by the layer's reader)."""
    digest, data = big_blob
    cache = BlobCache(str(tmp_path / "cache"))
    holding, release = threading.Event(), threading.Event()

    def bad_fetch(dest: BinaryIO) -> None:
        holding.set()
        release.wait(30)
        dest.write(data[:-1] + bytes([data[-1] ^ 1]))

    other = threading.Thread(target=lambda: cache.open(digest, bad_fetch).close())
    other.start()
    assert holding.wait(30)
    stream = StreamedBlob(cache, digest, lambda dest: pytest.fail("fetched although cached"))
    release.set()
    with VerifyingReader(stream, digest, len(data), "layer") as reader, pytest.raises(DigestMismatch,
                                                                                      match="cached blob"):
        reader.drain()
    other.join()
    stream.finish()


def test_after_a_restart_the_rest_is_hashed_as_it_is_read_from_the_cache(
        fault_proxy: FaultProxy, big_blob: tuple[Digest, bytes], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fetch checked what it wrote; what the reader reads from the cached file after a
    restart is checked again (here, the file is damaged past the restart once published)."""
    digest, data = big_blob
    fault_proxy.add(Fault.cut(len(data) // 2), Fault.strip_range())
    cache = BlobCache(str(tmp_path / "cache"))
    publish = BlobCache._publish

    def publish_then_damage(self: BlobCache, tmp: str, published: Digest) -> None:
        publish(self, tmp, published)
        with open(self.path(published), "r+b") as f:
            f.seek(len(data) - 10)
            f.write(bytes(10))

    monkeypatch.setattr(BlobCache, "_publish", publish_then_damage)
    stream = StreamedBlob(cache, digest, _fetcher(fault_proxy, digest, len(data)))
    with VerifyingReader(stream, digest, len(data), "layer") as reader, pytest.raises(DigestMismatch,
                                                                                      match="cached blob"):
        reader.drain()
    stream.finish()


def test_a_closed_stream_cannot_be_read_to_a_clean_end(fault_proxy: FaultProxy, big_blob: tuple[Digest, bytes],
                                                        tmp_path: Path) -> None:
    digest, data = big_blob
    cache = BlobCache(str(tmp_path / "cache"))
    stream = StreamedBlob(cache, digest, _fetcher(fault_proxy, digest, len(data)))
    reader = VerifyingReader(stream, digest, None, "layer")
    assert reader.read(100) == data[:100]
    stream.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read()
    stream.finish()
