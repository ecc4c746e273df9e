"""Output compressions (the appc set: gzip, xz, bzip2, none) and gzip levels (ISA-L 0-3,
the default 3, zlib 4-9) give the same image (the same uncompressed tar, so the same image
ID), deterministic bytes, files that GNU gzip / xz / bzip2, actool and our own renderer
read, and smaller files at higher levels; a bad level is a usage error."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_shared_images import actool_validate, convert

from docker2aci.aci import Compression

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "images" / "oci-archive.tar"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, bytes]]:
    """level → (image ID, file bytes) for levels 0, 1, 3, 6, 9 and no compression."""
    if not ARCHIVE.exists():
        pytest.skip(f"shared image {ARCHIVE} not found")
    found = {}
    for level in ("0", "1", "3", "6", "9", "none", "xz", "bzip2"):
        out = tmp_path_factory.mktemp(f"level-{level}")
        if level.isdigit():
            options: dict[str, object] = {"compression_level": int(level)}
        else:
            options = {"compression": Compression(level)}
        aci = convert(f"oci-archive:{ARCHIVE}", out, **options)
        actool_validate(aci.path)
        found[level] = (aci.image_id, Path(aci.path).read_bytes())
    return found


def test_every_level_holds_the_same_tar(outputs: dict[str, tuple[str, bytes]]) -> None:
    ids = {image_id for image_id, _ in outputs.values()}
    assert len(ids) == 1
    plain = outputs["none"][1]
    assert ids == {"sha512-" + hashlib.sha512(plain).hexdigest()}
    if shutil.which("gzip") is None:
        pytest.skip("gzip is not installed")
    for level, tool in (("0", "gzip"), ("1", "gzip"), ("3", "gzip"), ("6", "gzip"), ("9", "gzip"), ("xz", "xz"),
                        ("bzip2", "bzip2")):
        if shutil.which(tool) is None:
            continue
        unpacked = subprocess.run([tool, "-dc"], input=outputs[level][1], capture_output=True, check=True).stdout
        assert unpacked == plain, level


@pytest.mark.parametrize("kind", ["xz", "bzip2", "1", "none"])
def test_our_renderer_reads_every_compression(outputs: dict[str, tuple[str, bytes]], tmp_path: Path,
                                              kind: str) -> None:
    from runner.extract import compute_image_id, render_aci

    aci = tmp_path / "image.aci"
    aci.write_bytes(outputs[kind][1])
    assert compute_image_id(aci) == outputs[kind][0]
    (tmp_path / "rootfs").mkdir()
    manifest = render_aci(aci, tmp_path / "rootfs", image_id=outputs[kind][0])
    assert manifest["name"] == "test/busybox"
    assert (tmp_path / "rootfs" / "bin" / "busybox").is_file()


def test_higher_levels_are_smaller(outputs: dict[str, tuple[str, bytes]]) -> None:
    sizes = {level: len(data) for level, (_, data) in outputs.items()}
    assert sizes["0"] > sizes["1"] >= sizes["3"] > sizes["9"]
    assert sizes["6"] >= sizes["9"] and sizes["xz"] < sizes["9"] and sizes["bzip2"] < sizes["none"]


def test_each_level_is_deterministic(tmp_path: Path, outputs: dict[str, tuple[str, bytes]]) -> None:
    for level in (1, 9):
        again = convert(f"oci-archive:{ARCHIVE}", tmp_path / str(level), compression_level=level)
        assert Path(again.path).read_bytes() == outputs[str(level)][1]
    for kind in ("xz", "bzip2"):
        again = convert(f"oci-archive:{ARCHIVE}", tmp_path / kind, compression=Compression(kind))
        assert Path(again.path).read_bytes() == outputs[kind][1]


def test_the_default_is_isal_level_3_and_its_bytes_do_not_depend_on_the_threads(
        tmp_path: Path, outputs: dict[str, tuple[str, bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The default level is ISA-L's smallest (the size target against the reference tool's
    pgzip), compressed by GZIP_THREADS threads; one thread writes the same bytes (each
    block is compressed on its own, primed with the one before)."""
    from docker2aci import aci, compression

    assert compression.GZIP_LEVEL == 3 and compression.GZIP_THREADS == 2
    default = convert(f"oci-archive:{ARCHIVE}", tmp_path / "default")
    assert Path(default.path).read_bytes() == outputs["3"][1]
    assert len(outputs["none"][1]) > 1 << 20, "two 1 MiB blocks at least, or the threads have nothing to share"
    monkeypatch.setattr(aci, "GZIP_THREADS", 1)
    one = convert(f"oci-archive:{ARCHIVE}", tmp_path / "one-thread")
    assert Path(one.path).read_bytes() == outputs["3"][1]


def test_a_bad_level_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "docker2aci", "--compression-level", "10", "--output-dir",
                           str(tmp_path), f"oci-archive:{ARCHIVE}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--compression-level: gzip level 10: choose 0-3 (ISA-L, fast) or 4-9 (zlib" in proc.stderr
    assert list(tmp_path.iterdir()) == []


class _Recorder:
    """A stream that keeps each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)


@pytest.mark.parametrize("chunk", [4099, 65536, 1_000_003, 5 * 1024 * 1024])
def test_compressor_blocks_do_not_depend_on_how_the_tar_is_written(chunk: int) -> None:
    """ISA-L compresses each write as a block of its own, so the writer hands it exactly
    BLOCK-byte blocks whatever the write sizes (a layer read while it is being spooled
    arrives in reads of any size): found when two workers' ACIs of one image differed."""
    import random

    from docker2aci.aci import BLOCK, _HashingWriter

    data = random.Random(7).randbytes(3 * BLOCK + 12345)
    recorder = _Recorder()
    writer = _HashingWriter(recorder)  # type: ignore[arg-type]
    for start in range(0, len(data), chunk):
        writer.write(data[start:start + chunk])
    assert writer.hexdigest() == hashlib.sha512(data).hexdigest()
    assert [len(w) for w in recorder.writes] == [BLOCK, BLOCK, BLOCK, 12345]
    assert b"".join(recorder.writes) == data


@pytest.mark.parametrize("compression", ["none", "xz"])
def test_a_gzip_level_with_another_compression_is_warned_of(compression: str, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """It was ignored without a word (a new user's find)."""
    if not ARCHIVE.exists():
        pytest.skip(f"shared image {ARCHIVE} not found")
    convert(f"oci-archive:{ARCHIVE}", tmp_path, compression=Compression(compression), compression_level=9)
    assert f"--compression-level 9 is a gzip level: {compression} output has none; ignored" in caplog.text
    caplog.clear()
    convert(f"oci-archive:{ARCHIVE}", tmp_path / "default", compression=Compression(compression))
    assert "--compression-level" not in caplog.text
