"""The local store on its own (docker2aci.store): the blob cache's checks and modes, the
conversion key's parts, the conversion records, and gc's choices.

Each test pins a rule that a hand mutation of the store broke without any other test
failing (mutation review)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from docker2aci.digest import Digest
from docker2aci.errors import DigestMismatch
from docker2aci.store import BlobCache, ConversionCache, conversion_key, damaged_in_cache, gc_cache

DATA = b'{"architecture": "amd64", "os": "linux"}'
DIGEST = Digest.of_bytes(DATA)
RECORD = {"image_id": "sha512-x", "name": "example.com/app", "labels": {}, "manifest": {}, "manifest_digest": "d"}
KEY_PARTS = dict(version="1.0", manifest="sha256:" + "a" * 64, index=None, original="app:1", platform="linux/amd64",
                 compression="gzip", file="app-1.aci")


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_blob_is_stored_verified_and_private(tmp_path: Path) -> None:
    cache = BlobCache(str(tmp_path / "cache"))
    with pytest.raises(DigestMismatch):
        cache.put(DIGEST, DATA + b" ")
    assert not cache.has(DIGEST)
    cache.put(DIGEST, DATA)
    assert Path(cache.path(DIGEST)).read_bytes() == DATA and _mode(cache.path(DIGEST)) == 0o600
    other = Digest.of_bytes(b"fetched")
    cache.open(other, lambda dest: dest.write(b"fetched")).close()
    assert _mode(cache.path(other)) == 0o600
    assert os.listdir(tmp_path / "cache" / "tmp") == []


def test_a_damaged_small_blob_reads_as_absent_and_is_removed(tmp_path: Path) -> None:
    cache = BlobCache(str(tmp_path / "cache"))
    cache.put(DIGEST, DATA)
    assert cache.read(DIGEST, 1024) == DATA
    Path(cache.path(DIGEST)).write_bytes(DATA.replace(b"amd64", b"arm64"))
    assert cache.read(DIGEST, 1024) is None
    assert not cache.has(DIGEST)


@pytest.mark.parametrize("part, value", [
    ("version", "1.1"), ("manifest", "sha256:" + "b" * 64), ("index", "sha256:" + "c" * 64),
    ("original", "app:2"), ("platform", "linux/arm64"), ("compression", "none"), ("file", "other.aci"),
    ("name", "app"), ("ac_name", "example.com/app"),
])
def test_every_part_of_a_conversion_is_in_its_key(part: str, value: str) -> None:
    key = conversion_key(**KEY_PARTS)
    assert conversion_key(**KEY_PARTS) == key and len(key) == 64
    assert conversion_key(**{**KEY_PARTS, part: value}) != key


def _cached(tmp_path: Path, key: str) -> ConversionCache:
    conversions = ConversionCache(str(tmp_path / "cache"))
    aci = tmp_path / "out.aci"
    aci.write_bytes(b"an ACI")
    conversions.put(key, str(aci), RECORD)
    return conversions


def test_a_record_without_every_field_is_no_record(tmp_path: Path) -> None:
    key = conversion_key(**KEY_PARTS)
    conversions = _cached(tmp_path, key)
    found = conversions.get(key)
    assert found is not None and found.record["aci_sha256"] == Digest.of_bytes(b"an ACI").hex
    record = Path(conversions.dir, f"{key}.json")
    record.write_text(json.dumps({k: v for k, v in found.record.items() if k != "labels"}))
    assert conversions.get(key) is None


def test_a_damaged_cached_aci_loses_its_stamp(tmp_path: Path) -> None:
    key = conversion_key(**KEY_PARTS)
    conversions = _cached(tmp_path, key)
    aci, memo = Path(conversions.dir, f"{key}.aci"), Path(conversions.dir, f"{key}.stamp")
    memo.write_text("a stamp")
    assert not damaged_in_cache(str(aci)) and memo.exists()
    aci.unlink()  # (not written in place: it is a link to out.aci)
    aci.write_bytes(b"an ACJ")
    assert damaged_in_cache(str(aci))
    assert not memo.exists()


def test_gc_reads_a_conversion_s_last_use_from_its_record(tmp_path: Path) -> None:
    """The record's mtime is the last use (a reuse sets it); the ACI's and the stamp's are
    not: a conversion reused now whose stamp is old or missing is kept."""
    key = conversion_key(**KEY_PARTS)
    conversions = _cached(tmp_path, key)
    old = time.time() - 3600
    Path(conversions.dir, f"{key}.stamp").write_text("a stamp")
    for suffix in (".aci", ".stamp"):
        os.utime(Path(conversions.dir, key + suffix), (old, old))
    report = gc_cache(str(tmp_path / "cache"), 60)
    assert (report.conversions_recent, report.conversions_removed) == ([key], [])
    Path(conversions.dir, f"{key}.stamp").unlink()
    assert gc_cache(str(tmp_path / "cache"), 60).conversions_recent == [key]
    os.utime(Path(conversions.dir, f"{key}.json"), (old, old))
    assert gc_cache(str(tmp_path / "cache"), 60).conversions_removed == [key]
    assert os.listdir(conversions.dir) == []


def test_gc_leaves_files_in_locks_that_are_not_lock_files_of_the_cache(tmp_path: Path) -> None:
    cache = BlobCache(str(tmp_path / "cache"))
    cache.put(DIGEST, DATA)
    locks = tmp_path / "cache" / "locks"
    locks.mkdir(exist_ok=True)
    ours = f"sha256-{'d' * 64}"
    for name in (ours, "notes.txt", "sha256-short"):
        (locks / name).write_text("")
    report = gc_cache(str(tmp_path / "cache"), 3600)
    assert report.locks_removed == [ours]
    assert sorted(os.listdir(locks)) == ["notes.txt", "sha256-short"]


def test_a_symbolic_link_at_a_blob_s_place_is_never_followed(tmp_path: Path) -> None:
    """Even to a file holding the right bytes: the cache trusts only its own files."""
    cache = BlobCache(str(tmp_path / "cache"))
    cache.put(DIGEST, DATA)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(DATA)
    os.unlink(cache.path(DIGEST))
    os.symlink(elsewhere, cache.path(DIGEST))
    assert cache.open_cached(DIGEST) is None
    assert cache.read(DIGEST, 1024) is None


def test_gc_removes_a_tag_record_of_a_manifest_gone_but_not_one_written_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tag record (``--pull-policy new``) naming a manifest the cache no longer holds is
    removed by gc; one a conversion wrote between gc's read and its removal stays (gc
    removed it by path: review), and a record's partial file left by a killed writer goes."""
    import docker2aci.store as store

    cache = BlobCache(str(tmp_path))
    kept, gone = b'{"schemaVersion":2}', b'{"schemaVersion":2,"x":1}'
    cache.put(Digest.of_bytes(kept), kept)
    cache.remember_tag("h/r:kept", Digest.of_bytes(kept), "m")
    cache.remember_tag("h/r:gone", Digest.of_bytes(gone), "m")
    cache.remember_tag("h/r:raced", Digest.of_bytes(gone), "m")
    read = store._tag_record

    def racing(path: str) -> dict | None:
        record = read(path)
        if record is not None and record.get("reference") == "h/r:raced":
            cache.remember_tag("h/r:raced", Digest.of_bytes(kept), "m")  # a conversion, between read and removal
        return record

    monkeypatch.setattr(store, "_tag_record", racing)
    gc_cache(str(tmp_path), 3600.0)
    monkeypatch.undo()
    assert cache.recall_tag("h/r:kept") == (Digest.of_bytes(kept), "m")
    assert cache.recall_tag("h/r:gone") is None and not os.path.exists(cache._tag_path("h/r:gone"))
    assert cache.recall_tag("h/r:raced") == (Digest.of_bytes(kept), "m")
    partial = tmp_path / "tags" / ".docker2aci-killed.tmp"  # a writer killed before its rename
    partial.write_text("{")
    assert store.remove_abandoned_temporaries(str(tmp_path)) == [str(partial)]


def test_a_tag_record_made_insecurely_is_trusted_only_by_a_run_that_may_be_insecure(tmp_path: Path) -> None:
    """What a tag named over plain http or unchecked TLS could have been named by anyone
    on the way: a run allowed neither does not take it (review)."""
    cache = BlobCache(str(tmp_path))
    digest = Digest.of_bytes(b"{}")
    cache.remember_tag("h/r:t", digest, "m", insecure=True)
    assert cache.recall_tag("h/r:t") is None
    assert cache.recall_tag("h/r:t", insecure_ok=True) == (digest, "m")
    cache.remember_tag("h/r:t", digest, "m")
    assert cache.recall_tag("h/r:t") == (digest, "m")
    (tmp_path / "tags" / os.path.basename(cache._tag_path("h/r:t"))).write_text(
        json.dumps({"reference": "h/r:t", "digest": str(digest)}))  # no insecure field: taken as insecure
    assert cache.recall_tag("h/r:t") is None
