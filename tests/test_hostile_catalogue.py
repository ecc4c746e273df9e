"""The hostile-input catalogue: every kind of hostile input, and the test that covers it.

Tests already in :mod:`test_hostile` (``H``), :mod:`test_cases_layers` (``L``) and
``tests/runner`` (``R``: ``test_runner_extract`` ``RE``, ``test_runner_paths`` ``RP``)
are referenced, not repeated; the gaps are filled here (``C``).

=====================================  ==================================================================
Hostile input                          Test
=====================================  ==================================================================
1. decompression bomb (one layer)      C ``test_bomb_layer_is_refused_past_max_layer_size`` (exit 1, no ACI,
                                       no spool), ``test_bomb_layer_under_the_default_converts``,
                                       ``test_every_encoding_stops_at_the_limit``,
                                       ``test_plain_layer_read_in_place_is_capped_too``,
                                       ``test_max_layer_size_flag``; H ``test_gzip_bomb_layer_is_streamed_
                                       with_bounded_memory`` (RSS), ``test_huge_pax_header_is_refused_or_
                                       bounded``
   decompression bomb (whole archive)  C ``test_a_compressed_archive_is_held_to_the_layer_size_cap``
                                       (``docker save | gzip``); ``test_resources.py::test_tmp_dir_full_
                                       with_a_compressed_archive`` (it goes to --tmp-dir)
2. manifest/config over its limit      H ``test_oversized_metadata_is_refused`` (manifest > 4 MiB, config
                                       > 16 MiB); C ``test_oversized_index_files_are_refused``
                                       (index.json, manifest.json > 16 MiB)
   JSON Python cannot hold             H ``test_json_python_cannot_hold_is_an_invalid_manifest`` (nested
   (nested deep, huge numbers)         deep or a number of 5,000 digits, in the config, index.json, a
                                       manifest, manifest.json), ``test_deeply_nested_indexes_are_
                                       refused``, ``test_an_aci_manifest_with_a_huge_number_is_refused_in_
                                       one_line``; C ``test_deeply_nested_manifest_blob_is_an_invalid_
                                       manifest``
   extended headers (PAX, GNU sparse   H ``test_huge_pax_header_is_refused_or_bounded`` (layers); C ``test_a_
   1.0 map) over 1 MiB                 layer_sparse_map_over_the_header_limit_is_refused``, ``test_render_
                                       bounds_extended_headers_as_the_converter_does`` (ACIs, runner)
   more layers than an image holds     C ``test_an_image_of_more_layers_than_the_limit_is_refused`` (500,
   (a file descriptor each)            ``docker2aci.limits.MAX_LAYERS``), ``test_layers_up_to_the_limit_
                                       fit_the_default_descriptor_limit`` (``ulimit -n`` 1,024)
3. a million tar entries               C ``test_memory_grows_with_paths_not_with_sizes`` (200k in CI;
                                       figures below), H ``test_a_very_deep_entry_name_does_not_blow_up_
                                       memory``
4. symlink loops                       H ``test_symlinks_that_stay_inside_are_kept[loop]``,
                                       ``test_archive_member_symlink_loop_is_refused``,
                                       ``test_user_lookup_never_leaves_the_image[self-loop,two-link-loop]``;
                                       RP ``test_link_loops_stop``; C ``test_render_symlink_loops``
   symlink ways that cost time         H ``test_symlinks_with_long_ways_are_checked_in_linear_time``
   (long looping targets, chains)      (1,000 self-looping 2,400-step links; a 40-link chain 2,000 links
                                       lead into), ``test_whiteouts_reached_through_long_ways_are_
                                       applied_in_linear_time``: each under a time bound
   symlinks out of the rootfs          H ``test_escaping_relative_symlink_is_refused``, ``test_symlink_
                                       escaping_through_another_symlink_is_refused``, ``test_nothing_is_
                                       written_through_an_absolute_symlink``; RE ``test_unsafe_entries_are_
                                       refused_and_nothing_lands_outside[through-*]``, ``test_absolute_
                                       symlinks_are_kept_and_parents_resolve_inside_the_tree``; RP
                                       ``test_reading_never_follows_a_link_to_the_host``; C
                                       ``test_converted_links_out_of_the_root_render_inside``,
                                       ``test_render_keeps_an_escaping_link_but_never_writes_through_it``
5. hard links, missing or outside      H ``test_hard_link_to_outside_or_missing_target_is_refused``,
                                       ``test_hard_link_to_a_directory_is_refused``; RE ``test_unsafe_
                                       entries_...[hard-link-*]``; C ``test_render_hard_link_to_a_missing_
                                       target_is_refused``
   device nodes, fifos                 L ``test_rich_image_converts_to_a_valid_aci`` (chr, fifo); RE
                                       ``test_device_nodes_are_created_as_root``, ``..._skipped_without_
                                       root``; H ``test_user_lookup_never_leaves_the_image[device]``; C
                                       ``test_device_nodes_are_kept_and_rendered_inside_the_tree``,
                                       ``test_render_never_creates_a_device_outside_the_tree``
6. names that are not UTF-8            H ``test_odd_names_survive_byte_exact`` (conversion); RE ``test_
                                       names_are_byte_exact`` (render of a hand-made ACI); C ``test_odd_
                                       names_survive_conversion_and_rendering`` (both, end to end)
7. traversal through input paths       see ``TRAVERSAL`` below: each path that comes from input, with
                                       the test that covers it
8. NUL in a PAX name or link target    H ``test_a_nul_byte_in_a_pax_name_or_link_target_is_refused``; RE
                                       ``test_unsafe_entries_...[nul-*]``
9. damaged tar or compressed stream    H ``test_a_layer_damaged_after_its_first_entry_is_refused`` (bad
                                       header, cut header, symlink with data, data after an end block),
                                       ``test_a_truncated_zstd_layer_is_an_error_not_a_short_layer``
10. metadata an ACI cannot carry       H ``test_metadata_an_aci_cannot_carry_is_refused_naming_the_entry``
                                       (uid/gid past 32 bits, mtime past 64 bits, nan, non-UTF-8 xattr name); RE
                                       ``test_unsafe_entries_...[uid-past-64-bits,mtime-nan]``
11. a directory swapped for a link     RE ``test_a_directory_replaced_by_a_link_out_keeps_its_mode_off_
    (render's deferred chmod)          the_host``
=====================================  ==================================================================

Figures (measured on the CI host, 2 CPUs, Python 3.11):

* ``--max-layer-size`` defaults to 16 GiB (:data:`docker2aci.limits.DEFAULT_MAX_LAYER_BYTES`),
  counted on the uncompressed bytes as they stream, before they reach the spool.
* Converting a layer of empty entries costs about 1,050 bytes of peak RSS per path (the
  squash keeps one record per path): 131 MB for 100,000 entries, 238 MB for 200,000 and
  1,078 MB for 1,000,000 (measured by hand: 111 s, too slow for CI, which runs 50,000 and
  200,000 and checks the slope stays under 2 KiB per path); file sizes
  add nothing (a 128 MiB file is streamed, see H ``test_gzip_bomb_layer_is_streamed_with_
  bounded_memory``).
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import io
import json
import lzma
import os
import resource
import stat
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import hostilebuild as hb
import pytest
import zstandard
from crashkit import CLI_TIMEOUT, cli_env, paths_under
from test_hostile import aci_members, convert, layout_with, listing, peak_rss_growth_kib

import docker2aci
from docker2aci import cli, errors, layers
from docker2aci.limits import DEFAULT_MAX_LAYER_BYTES, MAX_LAYERS, parse_size
from runner.extract import EntryError, render_aci

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE = hb.tar([hb.dir_("etc"), hb.file("etc/passwd", hb.PASSWD), hb.file("hello", b"hi\n")])
MiB = 1 << 20


# ------------------------------------------------------------------------------ helpers


def render(aci: str | Path, where: Path) -> Path:
    """Render an ACI's rootfs into ``where/rootfs`` (the runner's extraction)."""
    rootfs = where / "rootfs"
    rootfs.mkdir(parents=True)
    render_aci(aci, rootfs)
    return rootfs


def aci_of(path: Path, members: list[hb.M]) -> Path:
    """A hand-made ACI (another tool's output): a manifest, then ``members``."""
    doc = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "test/hostile",
           "labels": [{"name": "os", "value": "linux"}]}
    path.write_bytes(hb.gz(hb.tar([hb.file("manifest", json.dumps(doc).encode()), hb.dir_("rootfs"), *members])))
    return path


def gzip_bomb(size: int) -> tuple[bytes, str]:
    """A gzipped layer tar holding one file of ``size`` zero bytes (a ~1000:1 bomb), built
    chunk by chunk; returns the blob and the diff ID of the plain tar."""
    co = zlib.compressobj(6, zlib.DEFLATED, 31)
    h = hashlib.sha256()
    parts = []

    def feed(data: bytes) -> None:
        h.update(data)
        parts.append(co.compress(data))

    feed(hb.raw_header(b"big", b"0", size))
    zero = bytes(MiB)
    for _ in range(size // MiB):
        feed(zero)
    feed(bytes(size % MiB) + bytes(-size % 512) + bytes(1024))
    parts.append(co.flush())
    return b"".join(parts), "sha256:" + h.hexdigest()


def bomb_layout(path: Path, size: int) -> Path:
    blob, diff_id = gzip_bomb(size)
    cfg = json.dumps({"architecture": hb.goarch(), "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    return hb.oci_layout(path, [b""], config=cfg, blobs=[blob]).path


# ------------------------------------------------------------------------------ 1. decompression bombs


def test_default_max_layer_size_is_16_gib() -> None:
    assert DEFAULT_MAX_LAYER_BYTES == 16 << 30
    assert docker2aci.ConvertOptions().max_layer_size == DEFAULT_MAX_LAYER_BYTES


def test_bomb_layer_is_refused_past_max_layer_size(tmp_path: Path, spool: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    layout = bomb_layout(tmp_path / "bomb", 128 * MiB)
    assert layout.stat().st_size < MiB
    out = tmp_path / "out"
    assert cli.main(["--max-layer-size", "64M", "--output-dir", str(out), f"oci:{layout}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "Traceback" not in err
    assert "sha256:" in err and str(64 * MiB) in err and "--max-layer-size" in err  # names the layer and limit
    assert listing(out) == [] and listing(spool) == []


def test_bomb_layer_error_is_limit_exceeded(tmp_path: Path) -> None:
    layout = bomb_layout(tmp_path / "bomb", 128 * MiB)
    with pytest.raises(errors.LimitExceeded) as err:
        convert(f"oci:{layout}", tmp_path / "out", max_layer_size=64 * MiB)
    assert err.value.reference == "limit-exceeded"


def test_bomb_layer_under_the_default_converts(tmp_path: Path) -> None:
    layout = bomb_layout(tmp_path / "bomb", 128 * MiB)
    [aci] = convert(f"oci:{layout}", tmp_path / "out")
    assert aci_members(aci.path)["rootfs/big"].size == 128 * MiB


def test_a_layer_exactly_at_the_limit_converts(tmp_path: Path) -> None:
    layout = bomb_layout(tmp_path / "bomb", 4 * MiB)
    plain = 512 + 4 * MiB + 1024
    [aci] = convert(f"oci:{layout}", tmp_path / "out", max_layer_size=plain)
    assert aci_members(aci.path)["rootfs/big"].size == 4 * MiB
    with pytest.raises(errors.LimitExceeded):
        convert(f"oci:{layout}", tmp_path / "out2", max_layer_size=plain - 1)


def _compress(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return hb.gz(data)
    if encoding == "bzip2":
        return bz2.compress(data)
    if encoding == "xz":
        return lzma.compress(data)
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


@pytest.mark.parametrize("encoding", ["gzip", "bzip2", "xz", "zstd", "plain"])
def test_every_encoding_stops_at_the_limit(encoding: str) -> None:
    data = bytes(8 * MiB)
    out = io.BytesIO()
    with pytest.raises(errors.LimitExceeded, match="L: .*1048576-byte limit"):
        layers.decompress_into(io.BytesIO(_compress(encoding, data)), encoding, out, hashlib.sha256(), "L", MiB)
    assert out.tell() <= MiB  # the chunk that would pass the limit is not written


def test_plain_layer_read_in_place_is_capped_too(tmp_path: Path) -> None:
    """A ``docker save`` member is read in place, not spooled: its size is checked first."""
    archive = tmp_path / "a.tar"
    archive.write_bytes(hb.docker_save([hb.tar([hb.file("f", bytes(2 * MiB))])]))
    with pytest.raises(errors.LimitExceeded, match="layer.tar"):
        convert(f"docker-archive:{archive}", tmp_path / "out", max_layer_size=MiB)
    assert listing(tmp_path / "out") == []
    [aci] = convert(f"docker-archive:{archive}", tmp_path / "out")
    assert aci_members(aci.path)["rootfs/f"].size == 2 * MiB


def test_open_in_place_refuses_a_plain_layer_over_the_cap_before_reading_it(tmp_path: Path) -> None:
    """The in-place check itself (the conversion above would also be stopped later, by the
    verifier): the size is known from the file, so nothing of the layer is squashed."""
    path = tmp_path / "layer.tar"
    path.write_bytes(hb.tar([hb.file("f", bytes(2 * MiB))]))
    blob = layers.LayerBlob("layer.tar", "", None, None, None, lambda: open(path, "rb"), None)
    with pytest.raises(errors.LimitExceeded, match="layer.tar: .*1048576-byte limit"):
        layers.open_in_place(dataclasses.replace(blob, max_size=MiB))
    stream = layers.open_in_place(dataclasses.replace(blob, max_size=4 * MiB))
    assert stream is not None
    stream.close()
    size = path.stat().st_size  # the limit is inclusive: a layer of exactly that size passes
    stream = layers.open_in_place(dataclasses.replace(blob, max_size=size))
    assert stream is not None
    stream.close()
    with pytest.raises(errors.LimitExceeded, match=f"layer.tar: .*{size - 1}-byte limit"):
        layers.open_in_place(dataclasses.replace(blob, max_size=size - 1))


def test_a_plain_layer_read_in_place_exactly_at_the_limit_converts(tmp_path: Path) -> None:
    """The check of a layer read in place as it is verified (:func:`layers.verify_layer`)
    counts the bytes as :func:`layers.open_in_place` does: a layer of exactly
    ``max_layer_size`` bytes converts."""
    layer = hb.tar([hb.file("f", bytes(2 * MiB))])
    archive = tmp_path / "a.tar"
    archive.write_bytes(hb.docker_save([layer]))
    [aci] = convert(f"docker-archive:{archive}", tmp_path / "out", max_layer_size=len(layer))
    assert aci_members(aci.path)["rootfs/f"].size == 2 * MiB


@pytest.mark.parametrize("text, size", [
    ("512M", 512 * MiB), ("4G", 4 << 30), ("4g", 4 << 30), ("100", 100), ("1k", 1024), ("2GiB", 2 << 30),
    ("1T", 1 << 40), ("16MB", 16 * MiB),
])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "-1", "4Q", "", "1.5G", "G"])
def test_max_layer_size_flag_rejects_garbage(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
    assert cli.main(["--max-layer-size", text, "--output-dir", str(tmp_path), "x.tar"]) == 2


def test_a_compressed_archive_is_held_to_the_layer_size_cap(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``docker save | gzip``: the archive is decompressed before it is read, counted while
    it streams and refused past --max-layer-size, with nothing left in --tmp-dir."""
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(hb.gz(hb.docker_save([hb.tar([hb.file("zeros", bytes(3 * MiB))])])))
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    code = cli.main(["--max-layer-size", "1M", "--tmp-dir", str(spool_dir), "--output-dir", str(tmp_path / "out"),
                     f"docker-archive:{archive}"])
    assert code == 1 and os.listdir(spool_dir) == [] and not (tmp_path / "out").exists()
    assert "the uncompressed archive is larger than the 1048576-byte limit" in capsys.readouterr().err
    assert cli.main(["--max-layer-size", "8M", "--tmp-dir", str(spool_dir), "--output-dir", str(tmp_path / "out"),
                     f"docker-archive:{archive}"]) == 0
    assert os.listdir(spool_dir) == []


def test_max_layer_size_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = layers.open_layers

    def spy(blobs, tmp_dir, progress, max_layer_size=None):  # type: ignore[no-untyped-def]
        seen.append(max_layer_size)
        return real(blobs, tmp_dir, progress, max_layer_size)

    monkeypatch.setattr("docker2aci.layers.open_layers", spy)  # the pipeline imports it when it converts
    layout = hb.oci_layout(tmp_path / "img", [BASE]).path
    assert cli.main(["-max-layer-size=3G", "--output-dir", str(tmp_path / "a"), f"oci:{layout}"]) == 0
    assert cli.main(["--output-dir", str(tmp_path / "b"), "--no-cache", f"oci:{layout}"]) == 0
    assert seen == [3 << 30, DEFAULT_MAX_LAYER_BYTES]


# ------------------------------------------------------------------------------ 2. metadata limits and nesting


@pytest.mark.parametrize("where", ["index.json", "manifest.json"])
def test_oversized_index_files_are_refused(tmp_path: Path, where: str) -> None:
    pad = b" " * (17 * MiB)  # valid JSON whitespace: only the size is wrong
    if where == "index.json":
        layout = hb.oci_layout(tmp_path / "img", [BASE])
        (layout.path / "index.json").write_bytes((layout.path / "index.json").read_bytes() + pad)
        source = f"oci:{layout.path}"
    else:
        real = hb.docker_save([BASE])
        with tarfile.open(fileobj=io.BytesIO(real)) as tf:
            doc = tf.extractfile("manifest.json").read()  # type: ignore[union-attr]
        archive = tmp_path / "a.tar"
        archive.write_bytes(hb.docker_save([BASE], replace={"manifest.json": hb.file("manifest.json", doc + pad)}))
        source = f"docker-archive:{archive}"
    with pytest.raises(errors.LimitExceeded, match="limit"):
        convert(source, tmp_path / "out")
    assert listing(tmp_path / "out") == []


def test_deeply_nested_manifest_blob_is_an_invalid_manifest(tmp_path: Path) -> None:
    layout = hb.oci_layout(tmp_path / "img", [BASE])
    nested = b"[" * 100_000 + b"]" * 100_000
    hb.put_blob(layout.path, nested)
    hb.write_index(layout.path, [dict(layout.descriptor(nested, hb.OCI_MANIFEST),
                                      annotations={hb.REF_NAME: "latest"})])
    with pytest.raises(errors.InvalidManifest, match="JSON"):
        convert(f"oci:{layout.path}", tmp_path / "out")


def many_layers(path: Path, count: int) -> Path:
    """An OCI layout whose manifest lists one small plain layer ``count`` times (a few
    hundred KiB of manifest: far under its limit)."""
    return hb.oci_layout(path, [hb.tar([hb.file("x", b"1")])] * count, compress=False).path


def test_an_image_of_more_layers_than_the_limit_is_refused(tmp_path: Path) -> None:
    layout = many_layers(tmp_path / "img", MAX_LAYERS + 1)
    with pytest.raises(errors.LimitExceeded) as err:
        convert(f"oci:{layout}", tmp_path / "out")
    assert str(err.value) == (f"oci:{layout} (linux/{hb.goarch()}): the image has 501 layers, more than "
                              "the 500 an image may have")
    assert listing(tmp_path / "out") == []


def run_with_descriptors(limit: int, *argv: str) -> subprocess.CompletedProcess[str]:
    """``docker2aci ARGV`` with at most ``limit`` open files (``ulimit -n``, soft)."""
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    return subprocess.run([sys.executable, "-m", "docker2aci", *argv], capture_output=True, text=True,
                          env=cli_env(), timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL, preexec_fn=lower, check=False)


def test_layers_up_to_the_limit_fit_the_default_descriptor_limit(tmp_path: Path) -> None:
    """Every layer is held open while the image is squashed: 1,100 layers gave a traceback
    ("[Errno 24] Too many open files") under the usual ``ulimit -n`` of 1,024."""
    ok = run_with_descriptors(1024, "--output-dir", str(tmp_path / "out"), f"oci:{many_layers(tmp_path / 'ok', 500)}")
    assert ok.returncode == 0, ok.stderr
    assert listing(tmp_path / "out") == ["ok-latest.aci"]
    layout = many_layers(tmp_path / "many", 1100)
    refused = run_with_descriptors(1024, "--output-dir", str(tmp_path / "out2"), f"oci:{layout}")
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        1, "", (f"Error: conversion error: oci:{layout} (linux/{hb.goarch()}): the image has 1100 layers, "
                "more than the 500 an image may have\n"))
    assert listing(tmp_path / "out2") == []


# ------------------------------------------------------------------------------ 3. many entries


def _empty_entries(n: int) -> Iterator[bytes]:
    """A layer tar of ``n`` empty files in directories of 1,000, chunk by chunk."""
    per, buf = 1000, []
    for d in range(-(-n // per)):
        directory = b"d%04d" % d
        buf.append(hb.raw_header(directory + b"/", b"5", 0))
        buf += [hb.raw_header(directory + b"/f%07d" % i, b"0", 0) for i in range(d * per, min(n, (d + 1) * per))]
        if len(buf) >= 4096:
            yield b"".join(buf)
            buf = []
    yield b"".join(buf) + bytes(1024)


def _sized_entries(n: int, size: int) -> Iterator[bytes]:
    data = bytes(size)
    for i in range(n):
        yield hb.raw_header(b"f%07d" % i, b"0", size) + data
    yield bytes(1024)


def peak_rss_growth(source: str, out: Path) -> int:
    """Peak RSS growth (bytes) of a fresh interpreter while it converts ``source`` into a
    plain tar (:func:`test_hostile.peak_rss_growth_kib`); a refusal fails the test."""
    return peak_rss_growth_kib(source, out, compression="none", allow_refusal=False, timeout=300) * 1024


def test_memory_grows_with_paths_not_with_sizes(tmp_path: Path) -> None:
    """Peak RSS per path, from the slope between 50,000 and 200,000 empty entries (a
    million takes two minutes: measured by hand, see the module docstring), and a layer of
    2,000 files of 64 KiB (128 MiB of data) against 2,000 empty ones."""
    small, large = 50_000, 200_000
    growth = {}
    for n in (small, large):
        hb.oci_layout_streamed(tmp_path / f"n{n}", _empty_entries(n))
        growth[n] = peak_rss_growth(f"oci:{tmp_path / f'n{n}'}", tmp_path / f"out{n}")
        for aci in (tmp_path / f"out{n}").glob("*.aci"):
            aci.unlink()  # a few hundred MB each
    per_path = (growth[large] - growth[small]) / (large - small)
    assert per_path < 2048, f"{per_path:.0f} bytes of peak RSS per path"

    hb.oci_layout_streamed(tmp_path / "empty", _sized_entries(2000, 0))
    hb.oci_layout_streamed(tmp_path / "sized", _sized_entries(2000, 64 << 10))
    empty = peak_rss_growth(f"oci:{tmp_path / 'empty'}", tmp_path / "out-empty")
    sized = peak_rss_growth(f"oci:{tmp_path / 'sized'}", tmp_path / "out-sized")
    assert sized - empty < 32 * MiB, f"128 MiB of file data cost {(sized - empty) >> 20} MiB more"


# ------------------------------------------------------------------------------ 4. symlinks at render time


def test_render_symlink_loops(tmp_path: Path) -> None:
    """Loops are kept as links; an entry written through one is refused; nothing else moves."""
    aci = aci_of(tmp_path / "loop.aci", [hb.symlink("rootfs/a", "b"), hb.symlink("rootfs/b", "a"),
                                         hb.symlink("rootfs/self", "self")])
    rootfs = render(aci, tmp_path / "ok")
    assert (os.readlink(rootfs / "a"), os.readlink(rootfs / "b"), os.readlink(rootfs / "self")) == ("b", "a", "self")

    for name, members in {
        "through-two-link-loop": [hb.symlink("rootfs/a", "b"), hb.symlink("rootfs/b", "a"), hb.file("rootfs/a/x")],
        "through-self-loop": [hb.symlink("rootfs/s", "s"), hb.dir_("rootfs/s/d")],
    }.items():
        aci = aci_of(tmp_path / f"{name}.aci", members)
        before = paths_under(tmp_path, tmp_path / name)
        with pytest.raises(EntryError, match="too many levels of symbolic links"):
            render(aci, tmp_path / name)
        assert paths_under(tmp_path, tmp_path / name) == before


def test_render_keeps_an_escaping_link_but_never_writes_through_it(tmp_path: Path) -> None:
    """Another tool's ACI may hold a relative link out of the rootfs (our converter refuses
    it): rendering keeps it verbatim (it is resolved inside the root at run time) and
    refuses any entry that would be written through it."""
    aci = aci_of(tmp_path / "up.aci", [hb.symlink("rootfs/up", "../../../../etc")])
    rootfs = render(aci, tmp_path / "ok")
    assert os.readlink(rootfs / "up") == "../../../../etc"

    aci = aci_of(tmp_path / "through.aci", [hb.symlink("rootfs/up", "../../.."), hb.file("rootfs/up/pwned", b"x")])
    before = paths_under(tmp_path, tmp_path / "bad")
    with pytest.raises(EntryError, match="outside the rootfs"):
        render(aci, tmp_path / "bad")
    assert paths_under(tmp_path, tmp_path / "bad") == before


def test_converted_links_out_of_the_root_render_inside(tmp_path: Path) -> None:
    """End to end: absolute links (to ``/``, ``/etc``) and loops survive conversion and
    rendering verbatim, and entries under an absolute link land inside the tree."""
    layout = layout_with(tmp_path, [hb.symlink("root", "/"), hb.symlink("etc-link", "/etc"),
                                    hb.symlink("loop1", "loop2"), hb.symlink("loop2", "loop1"),
                                    hb.dir_("etc"), hb.file("etc/marker", b"inside")])
    [aci] = convert(f"oci:{layout}", tmp_path / "out")
    before = paths_under(tmp_path, tmp_path / "render")
    rootfs = render(aci.path, tmp_path / "render")
    assert os.readlink(rootfs / "root") == "/" and os.readlink(rootfs / "etc-link") == "/etc"
    assert os.readlink(rootfs / "loop1") == "loop2"
    assert (rootfs / "etc/marker").read_bytes() == b"inside"
    assert paths_under(tmp_path, tmp_path / "render") == before


# ------------------------------------------------------------------------------ 5. hard links and devices


def test_render_hard_link_to_a_missing_target_is_refused(tmp_path: Path) -> None:
    aci = aci_of(tmp_path / "h.aci", [hb.hardlink("rootfs/h", "rootfs/nothere")])
    with pytest.raises(EntryError, match="does not exist") as err:
        render(aci, tmp_path / "r")
    assert err.value.entry == "rootfs/h"


def _blockdev(name: str, major: int, minor: int) -> hb.M:
    return hb.M(name, tarfile.BLKTYPE, mode=0o600, devmajor=major, devminor=minor)


def _fifo(name: str) -> hb.M:
    return hb.M(name, tarfile.FIFOTYPE, mode=0o644)


@pytest.mark.root
def test_device_nodes_are_kept_and_rendered_inside_the_tree(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, [hb.dir_("dev"), hb.chardev("dev/null", 1, 3), _blockdev("dev/loop9", 7, 9),
                                    _fifo("dev/ctl")])
    [aci] = convert(f"oci:{layout}", tmp_path / "out")
    m = aci_members(aci.path)
    assert (m["rootfs/dev/null"].ischr(), m["rootfs/dev/null"].devmajor, m["rootfs/dev/null"].devminor) == (True, 1, 3)
    assert (m["rootfs/dev/loop9"].isblk(), m["rootfs/dev/loop9"].devmajor, m["rootfs/dev/loop9"].devminor) == (
        True, 7, 9)
    assert m["rootfs/dev/ctl"].isfifo()
    before = paths_under(tmp_path, tmp_path / "render")
    rootfs = render(aci.path, tmp_path / "render")
    assert stat.S_ISCHR(os.lstat(rootfs / "dev/null").st_mode)
    assert os.lstat(rootfs / "dev/loop9").st_rdev == os.makedev(7, 9)
    assert stat.S_ISBLK(os.lstat(rootfs / "dev/loop9").st_mode)
    assert stat.S_ISFIFO(os.lstat(rootfs / "dev/ctl").st_mode)
    assert paths_under(tmp_path, tmp_path / "render") == before


@pytest.mark.root
@pytest.mark.parametrize("link, inside", [("/", ""), ("/tmp", "tmp"), ("../../..", None), ("/../../tmp", None)])
@pytest.mark.parametrize("device", ["chr", "blk", "fifo"])
def test_render_never_creates_a_device_outside_the_tree(tmp_path: Path, link: str, inside: str | None,
                                                       device: str) -> None:
    """A device under a link that points out of the rootfs: created inside (an absolute
    link restarts at the rootfs) or refused (a link that climbs above the root with ``..``,
    ``inside`` ``None``), never on the host."""
    name = f"rootfs/d/node-{device}-{os.getpid()}"
    node = {"chr": hb.chardev(name, 1, 3), "blk": _blockdev(name, 7, 9), "fifo": _fifo(name)}[device]
    aci = aci_of(tmp_path / "dev.aci", [hb.symlink("rootfs/d", link), node])
    on_host = [os.path.join(p, os.path.basename(name)) for p in ("/", "/tmp")]  # where an escape would put it
    before = paths_under(tmp_path, tmp_path / "r")
    try:
        rootfs = render(aci, tmp_path / "r")
    except EntryError as err:
        assert inside is None and err.entry == name
    else:
        assert inside is not None
        assert os.path.lexists(rootfs / inside / os.path.basename(name)), sorted(paths_under(rootfs, tmp_path / "none"))
    assert paths_under(tmp_path, tmp_path / "r") == before
    assert [p for p in on_host if os.path.lexists(p)] == []


# ------------------------------------------------------------------------------ 6. names that are not UTF-8


def sparse_map_member(name: str, regions: int) -> hb.M:
    """A GNU sparse 1.0 file (PAX ``GNU.sparse.*``) whose map, at the start of its data,
    claims ``regions`` regions of one byte at offset 1 and lists them all."""
    body = b"%d\n" % regions + b"1\n" * (2 * regions)
    return hb.file(name, body + bytes(-len(body) % 512), pax={
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name, "GNU.sparse.realsize": "2"})


HUGE_HEADERS = {  # each far over converters.rootfs.MAX_HEADER_BYTES (1 MiB), a few KiB of gzip
    "pax-header": (hb.M("rootfs/f", pax={"comment": "x" * (4 * MiB)}),
                   "a 4194321-byte extended header is over the 1048576-byte limit"),
    "sparse-map": (sparse_map_member("rootfs/f", MiB),
                   "the GNU sparse map of 'rootfs/f' is over the 1048576-byte limit"),
}


@pytest.mark.parametrize("case", HUGE_HEADERS)
def test_render_bounds_extended_headers_as_the_converter_does(tmp_path: Path, case: str) -> None:
    """The runner read an ACI's extended headers whole: a 256 MiB PAX header (255 KiB of
    gzip) took 26 s and 800 MiB, a 16 MiB sparse map (16 KiB) 37 s and 800 MiB."""
    member, message = HUGE_HEADERS[case]
    aci = aci_of(tmp_path / "big.aci", [member])
    assert aci.stat().st_size < 64 * 1024
    with pytest.raises(errors.RunnerError) as err:
        render(aci, tmp_path / "tree")
    assert str(err.value) == f"rendering {aci}: {message}"
    assert listing(tmp_path / "tree" / "rootfs") == []


def test_a_layer_sparse_map_over_the_header_limit_is_refused(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, [sparse_map_member("f", MiB)])
    with pytest.raises(errors.InvalidLayer, match="not a valid tar: the GNU sparse map of 'f' is over the 1048576-byte "
                                                  "limit$"):
        convert(f"oci:{layout}", tmp_path / "out")


def test_odd_names_survive_conversion_and_rendering(tmp_path: Path) -> None:
    names = [b"caf\xe9-latin1", b"\xff\xfe", b"new\nline", b"back\\slash", "ü".encode(), b"a\x80b"]
    members = [hb.dir_(b"d\xff"), *(hb.file(n, n) for n in names), hb.file(b"d\xff/in", b"in"),
               hb.symlink(b"link\xe9", b"caf\xe9-latin1"), hb.hardlink(b"hard\xe9", b"caf\xe9-latin1")]
    layout = layout_with(tmp_path, members)
    [aci] = convert(f"oci:{layout}", tmp_path / "out")
    got = {os.fsencode(n) for n in aci_members(aci.path)}
    for n in [*names, b"d\xff", b"d\xff/in", b"link\xe9", b"hard\xe9"]:
        assert b"rootfs/" + n in got
    rootfs = os.fsencode(render(aci.path, tmp_path / "render"))
    on_disk = set(os.listdir(rootfs))
    assert {*names, b"d\xff", b"link\xe9", b"hard\xe9"} <= on_disk
    for n in names:
        with open(os.path.join(rootfs, n), "rb") as f:
            assert f.read() == n
    assert os.listdir(os.path.join(rootfs, b"d\xff")) == [b"in"]
    assert os.readlink(os.path.join(rootfs, b"link\xe9")) == b"caf\xe9-latin1"
    assert os.stat(os.path.join(rootfs, b"hard\xe9")).st_ino == os.stat(os.path.join(rootfs, b"caf\xe9-latin1")).st_ino


# ------------------------------------------------------------------------------ 7. traversal through input paths


TRAVERSAL_COVERED = {
    "tar entry names": "H test_escaping_entry_names_are_refused; RE test_unsafe_entries_...[dotdot-*, absolute-name]",
    "symlink targets": "H test_escaping_relative_symlink_is_refused, test_symlink_escaping_through_another_symlink_"
                       "is_refused; RE [through-*]",
    "hard-link targets": "H test_hard_link_to_outside_or_missing_target_is_refused; RE [hard-link-*]",
    "manifest.json Layers/Config": "H test_archive_manifest_json_path_escaping_is_refused, "
                                   "test_archive_manifest_json_odd_layer_paths_are_not_found",
    "archive member links": "H test_archive_manifest_json_symlink_leaving_the_archive_is_refused, "
                            "test_archive_layer_symlink_to_host_shadow_is_refused, "
                            "test_archive_hard_link_member_leaving_the_archive_is_refused",
    "RepoTags": "H test_archive_repo_tag_with_path_tricks_is_refused",
    "legacy layer IDs": "H test_legacy_layer_id_with_dots_is_refused",
    "OCI index.json digests": "H test_index_digest_path_tricks_are_refused",
    "OCI blob and layout links": "H test_blobs_dir_symlink_leaving_the_layout_is_refused, "
                                 "test_blob_symlink_to_host_file_is_refused, test_index_json_symlink_to_host_file_"
                                 "is_refused",
    "diff_ids": "H test_diff_id_with_path_tricks_is_refused",
    "ref names (output file names)": "H test_ref_name_with_path_tricks_is_refused, test_bare_tag_dots_stay_inside_"
                                     "the_output_dir",
    "/etc/passwd lookups": "H test_user_lookup_never_leaves_the_image",
}
"""Paths from input already covered elsewhere (``H`` test_hostile, ``RE`` test_runner_extract)."""

BAD_DIGESTS = ["sha256:../../x", "sha256:" + "a" * 64 + "/../x", "../sha256:" + "a" * 64,
               "sha256:" + "a" * 32 + "/" + "a" * 31, "sha256/" + "a" * 64]


def _manifest_with(layout: hb.Layout, field: str, digest: str) -> bytes:
    doc = json.loads(layout.manifest)
    target = doc["config"] if field == "config" else doc["layers"][0]
    target["digest"] = digest
    return json.dumps(doc).encode()


def _digest_in_manifest(tmp_path: Path, field: str, digest: str) -> str:
    layout = hb.oci_layout(tmp_path / "img", [BASE])
    manifest = _manifest_with(layout, field, digest)
    hb.put_blob(layout.path, manifest)
    hb.write_index(layout.path, [dict(layout.descriptor(manifest, hb.OCI_MANIFEST),
                                      annotations={hb.REF_NAME: "latest"})])
    return f"oci:{layout.path}"


def _digest_in_nested_index(tmp_path: Path, digest: str) -> str:
    layout = hb.oci_layout(tmp_path / "img", [BASE])
    inner = json.dumps({"schemaVersion": 2, "mediaType": hb.OCI_INDEX, "manifests": [
        {"mediaType": hb.OCI_MANIFEST, "digest": digest, "size": 10,
         "platform": {"os": "linux", "architecture": hb.goarch()}}]}).encode()
    hb.put_blob(layout.path, inner)
    hb.write_index(layout.path, [dict(layout.descriptor(inner, hb.OCI_INDEX), annotations={hb.REF_NAME: "latest"})])
    return f"oci:{layout.path}"


def _digest_in_oci_archive(tmp_path: Path, digest: str) -> str:
    layout = hb.oci_layout(tmp_path / "img", [BASE])
    hb.write_index(layout.path, [{"mediaType": hb.OCI_MANIFEST, "digest": digest, "size": 10,
                                  "annotations": {hb.REF_NAME: "latest"}}])
    archive = tmp_path / "img.tar"
    archive.write_bytes(hb.tar_dir(layout.path))
    return f"oci-archive:{archive}"


def _docker25_manifest_json_layer(tmp_path: Path, path: str) -> str:
    """A ``docker save`` of Docker 25+ (an OCI layout plus ``manifest.json``) whose
    ``Layers`` entry walks out through ``blobs/``."""
    layout = hb.oci_layout(tmp_path / "img", [BASE], compress=False)
    cfg = "blobs/sha256/" + hb.sha256(layout.config)
    (layout.path / "manifest.json").write_text(json.dumps([{"Config": cfg, "RepoTags": ["test/x:latest"],
                                                            "Layers": [path]}]))
    archive = tmp_path / "d25.tar"
    archive.write_bytes(hb.tar_dir(layout.path))
    return f"docker-archive:{archive}"


def _layer(members: list[hb.M], fmt: int = tarfile.PAX_FORMAT) -> Callable[[Path], str]:
    return lambda t: f"oci:{hb.oci_layout(t / 'img', [hb.tar(members, fmt)]).path}"


_BAD_DIGEST = (errors.InvalidManifest, "field digest: invalid digest")
_UNSAFE_ENTRY = (errors.InvalidLayer, r"'\.\.' component|outside the root|names no file")

TRAVERSAL: dict[str, tuple[Callable[[Path], str], type[Exception], str]] = {
    # new: digests that come from a manifest, a nested index or an oci-archive's index
    **{f"manifest-config-digest-{i}": (lambda t, d=d: _digest_in_manifest(t, "config", d), *_BAD_DIGEST)
       for i, d in enumerate(BAD_DIGESTS)},
    **{f"manifest-layer-digest-{i}": (lambda t, d=d: _digest_in_manifest(t, "layer", d), *_BAD_DIGEST)
       for i, d in enumerate(BAD_DIGESTS)},
    **{f"nested-index-digest-{i}": (lambda t, d=d: _digest_in_nested_index(t, d), *_BAD_DIGEST)
       for i, d in enumerate(BAD_DIGESTS)},
    **{f"oci-archive-index-digest-{i}": (lambda t, d=d: _digest_in_oci_archive(t, d), *_BAD_DIGEST)
       for i, d in enumerate(BAD_DIGESTS)},
    # new: names and link targets that reach the squash through PAX and GNU long-name records
    "pax-path": (_layer([hb.file("ok", b"x", pax={"path": "../../escape"})]), *_UNSAFE_ENTRY),
    "pax-linkpath-symlink": (_layer([hb.M("l", tarfile.SYMTYPE, pax={"linkpath": "../.."})]), *_UNSAFE_ENTRY),
    "pax-linkpath-hardlink": (_layer([hb.M("h", tarfile.LNKTYPE, pax={"linkpath": "../x"})]), *_UNSAFE_ENTRY),
    "gnu-longname": (_layer([hb.file("../" * 60 + "x")], tarfile.GNU_FORMAT), *_UNSAFE_ENTRY),
    "gnu-longlink": (_layer([hb.hardlink("h", "../" * 60 + "x")], tarfile.GNU_FORMAT), *_UNSAFE_ENTRY),
    "hardlink-dots-in-middle": (_layer([hb.file("a"), hb.hardlink("h", "a/../../x")]), *_UNSAFE_ENTRY),
    "whiteout-of-dotdot": (_layer([hb.dir_("a"), hb.file("a/.wh..")]), *_UNSAFE_ENTRY),
    "whiteout-escaping": (_layer([hb.file("../.wh.etc")]), *_UNSAFE_ENTRY),
    "docker25-layers-through-blobs": (lambda t: _docker25_manifest_json_layer(t, "blobs/../../../etc/passwd"),
                                      errors.SourceError, "is unsafe"),
}
"""Paths from input not covered elsewhere: case → (build the source, the error expected, its message)."""


@pytest.mark.parametrize("case", TRAVERSAL, ids=list(TRAVERSAL))
def test_traversal_through_input_paths_is_refused(tmp_path: Path, case: str) -> None:
    build, expected, message = TRAVERSAL[case]
    source = build(tmp_path)
    out = tmp_path / "deep" / "out"
    before = paths_under(tmp_path, tmp_path / "deep")
    with pytest.raises(expected, match=message):
        convert(source, out)
    assert listing(out) == []
    assert paths_under(tmp_path, tmp_path / "deep") == before
