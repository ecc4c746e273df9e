"""Layer reading end to end: hand-built OCI layouts through ``docker2aci.convert``.

Public cases 18, 19 and 52 (``../shared/cases/public-cases.md``) and the rules of
``decisions.md`` ("Layers and the ACI"): decompression chosen from the bytes, every
blob checked against its digest and every layer against its diff ID, unsafe entries
refused naming the entry, nothing left in the output directory after an error, and a
byte-identical ACI for the same input. Every ACI that converts is checked with
``actool validate`` when the tool is installed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import docker2aci
import layerbuild as lb
from docker2aci.errors import (DigestMismatch, ImageNotFound, InvalidLayer, InvalidManifest, SizeMismatch,
                               UnsupportedMediaType)
from docker2aci.manifest import Platform

ACTOOL = shutil.which("actool") or "/usr/bin/actool"

BASE = [lb.dir_("etc"), lb.file("etc/hostname", "box\n"), lb.dir_("bin"),
        lb.file("bin/app", "#!/bin/sh\necho hi\n", mode=0o755)]
UPPER = [lb.whiteout("etc/hostname"), lb.file("etc/motd", "hello\n")]


# ---------------------------------------------------------------- helpers


def convert(layout: Path, out: Path) -> docker2aci.ConvertedACI:
    [aci] = docker2aci.convert(f"oci:{layout}", docker2aci.ConvertOptions(output_dir=str(out)))
    return aci


def image(tmp_path: Path, *layers: lb.Layer, name: str = "img", **kw: object) -> lb.Layout:
    return lb.write_oci_layout(tmp_path / name, layers, **kw)  # type: ignore[arg-type]


def aci_tar(path: str | Path) -> bytes:
    data = Path(path).read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def rootfs(path: str | Path) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    """The ACI's ``rootfs/`` entries (name without the prefix → header, content)."""
    out: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(aci_tar(path)), mode="r:", encoding=lb.ENCODING,
                      errors=lb.ERRORS) as tf:
        for m in tf:
            if m.name.startswith("rootfs/"):
                data = tf.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
                out[m.name.removeprefix("rootfs/")] = (m, data)
    return out


def image_files(path: str | Path) -> dict[str, bytes | None]:
    """Names and contents of the image's own entries (the stdio links excluded)."""
    return {n: d for n, (_, d) in rootfs(path).items() if not n.startswith("dev/")}


def actool_validate(path: str | Path) -> None:
    """``actool validate`` must accept the ACI (the check is skipped without actool)."""
    if not os.access(ACTOOL, os.X_OK):
        return
    proc = subprocess.run([ACTOOL, "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- case 19: encodings


@pytest.mark.parametrize(("compression", "media_type"), [
    ("gzip", None),
    ("zstd", None),
    ("bzip2", None),
    ("xz", None),
    ("plain", None),
    ("zstd", lb.MEDIA_TYPES["gzip"]),
    ("zstd", "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    ("plain", lb.MEDIA_TYPES["gzip"]),
    ("gzip", lb.MEDIA_TYPES["plain"]),
    ("gzip", "application/octet-stream"),
], ids=["gzip", "zstd", "bzip2", "xz", "plain", "zstd-typed-oci-gzip", "zstd-typed-docker-gzip",
        "plain-typed-gzip", "gzip-typed-plain", "gzip-typed-other"])
def test_case_19_encoding_decided_by_bytes(tmp_path: Path, compression: str, media_type: str | None) -> None:
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE), compression, media_type),
                   lb.Layer(lb.tar_bytes(UPPER), "gzip"))
    aci = convert(layout.path, tmp_path / "out")
    assert image_files(aci.path) == {"etc": None, "etc/motd": b"hello\n", "bin": None,
                                     "bin/app": b"#!/bin/sh\necho hi\n"}
    assert rootfs(aci.path)["bin/app"][0].mode == 0o755
    actool_validate(aci.path)


def test_case_19_media_type_mismatch_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE), "zstd", lb.MEDIA_TYPES["gzip"]))
    with caplog.at_level(logging.WARNING):
        convert(layout.path, tmp_path / "out")
    assert any(layout.layer_digests[0] in r.getMessage() and "zstd" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


def test_case_19_layers_of_every_encoding_in_one_image(tmp_path: Path) -> None:
    layers = [lb.Layer(lb.tar_bytes([lb.file(f"l{i}", comp)]), comp)
              for i, comp in enumerate(["gzip", "zstd", "bzip2", "xz", "plain"])]
    aci = convert(image(tmp_path, *layers).path, tmp_path / "out")
    assert image_files(aci.path) == {f"l{i}": comp.encode()
                                     for i, comp in enumerate(["gzip", "zstd", "bzip2", "xz", "plain"])}
    actool_validate(aci.path)


@pytest.mark.parametrize("blob", [
    random.Random(19).randbytes(4096),
    b"PK\x03\x04" + bytes(600),
    b"\x04\x22\x4d\x18" + random.Random(4).randbytes(600),
], ids=["random", "zip", "lz4"])
def test_case_19_unknown_encoding(tmp_path: Path, blob: bytes) -> None:
    layout = image(tmp_path, lb.Layer(b"", blob=blob, media_type=lb.MEDIA_TYPES["gzip"]))
    with pytest.raises(UnsupportedMediaType):
        convert(layout.path, tmp_path / "out")
    assert listing(tmp_path / "out") == []


# ---------------------------------------------------------------- digests


_RNG = random.Random(0)
_TEXT = b"".join(b"line %d %s\n" % (i, bytes(_RNG.choice(b"abcdefgh") for _ in range(8))) for i in range(20000))
_LARGE = [lb.file("text", _TEXT), lb.file("noise", random.Random(0).randbytes(2 << 20))]
"""A layer whose gzip is over 1 MiB (the read size) with a compressible start."""


@pytest.mark.parametrize(("compression", "entries", "offset"), [
    ("plain", BASE, 1024),
    ("plain", BASE, -1500),
    ("gzip", BASE, 40),
    ("gzip", BASE, -1),
    ("zstd", BASE, 30),
    ("xz", BASE, -5),
    ("plain", BASE, 0),
    ("gzip", _LARGE, 2000),
], ids=["plain-content", "plain-end", "gzip-middle", "gzip-trailer", "zstd", "xz-trailer",
        "plain-first-byte", "gzip-large-early"])
def test_blob_not_matching_its_digest(tmp_path: Path, compression: str, entries: list[lb.Entry],
                                      offset: int) -> None:
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(entries), compression))
    blob = layout.blob(layout.layer_digests[0])
    flip(blob, offset % blob.stat().st_size)
    with pytest.raises(DigestMismatch) as info:
        convert(layout.path, tmp_path / "out")
    assert info.value.expected == layout.layer_digests[0]
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("compression", ["plain", "gzip", "zstd"])
def test_layer_not_matching_its_diff_id(tmp_path: Path, compression: str) -> None:
    wrong = lb.sha256(b"not this layer")
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE), "gzip"),
                   lb.Layer(lb.tar_bytes(UPPER), compression, diff_id=wrong))
    with pytest.raises(DigestMismatch) as info:
        convert(layout.path, tmp_path / "out")
    assert info.value.expected == wrong
    assert info.value.actual == lb.sha256(lb.tar_bytes(UPPER))
    assert "diff ID" in str(info.value)
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_compressed_layer_whose_diff_id_is_its_blob_digest_is_checked(tmp_path: Path, compression: str) -> None:
    """Only an uncompressed blob may be its own diff ID (hashed once, as the blob): a
    config that gives a compressed blob's digest as its diff ID names no tar, and the
    tar is still hashed and refused."""
    tar = lb.tar_bytes(UPPER)
    blob = lb.compress(tar, compression)
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE), "gzip"),
                   lb.Layer(tar, compression, blob=blob, diff_id=lb.sha256(blob)))
    with pytest.raises(DigestMismatch) as info:
        convert(layout.path, tmp_path / "out")
    assert (info.value.expected, info.value.actual) == (lb.sha256(blob), lb.sha256(tar))
    assert "diff ID" in str(info.value)
    assert listing(tmp_path / "out") == []


GARBAGE = "stream is corrupt: trailing garbage after the compressed stream"


@pytest.mark.parametrize("compression, tail, error", [
    pytest.param("gzip", bytes(1024), None, id="zero-padding-is-accepted"),
    # zero padding to past the first read (layers.CHUNK), then garbage
    pytest.param("gzip", bytes(1 << 20) + b"junk", GARBAGE, id="garbage-after-padding-is-refused"),
    # what is no member was read as one: "incorrect header check", or "truncated" when short
    pytest.param("gzip", b"junk after the layer", GARBAGE, id="garbage-is-refused"),
    pytest.param("gzip", b"j", GARBAGE, id="one-byte-of-garbage-is-refused"),
    pytest.param("gzip", b"\x1f\x8b\x08", "stream is truncated", id="a-second-member-cut-short-is-truncated"),
    pytest.param("gzip", b"\x1f", "stream is truncated", id="a-second-member-cut-in-its-magic-is-truncated"),
    pytest.param("bzip2", b"BZ", "stream is truncated", id="bzip2-a-second-member-cut-in-its-magic"),
    pytest.param("bzip2", b"BZx", GARBAGE, id="bzip2-garbage-is-refused"),
    pytest.param("xz", b"junk", GARBAGE, id="xz-garbage-is-refused"),
])
def test_what_follows_the_last_member(tmp_path: Path, compression: str, tail: bytes, error: str | None) -> None:
    tar = lb.tar_bytes(UPPER)
    blob = lb.compress(tar, compression) + tail
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE), "gzip"), lb.Layer(tar, compression, blob=blob))
    if error is None:
        assert "etc/motd" in rootfs(convert(layout.path, tmp_path / "out").path)
        return
    error = f"{compression} {error}"
    with pytest.raises(InvalidLayer) as info:
        convert(layout.path, tmp_path / "out")
    assert str(info.value).endswith(error)
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "xz"])
@pytest.mark.parametrize("cut", [1, 512, 1025], ids=lambda cut: f"cut-at-{cut}")
def test_a_layer_in_several_members_is_read_whole(tmp_path: Path, compression: str, cut: int) -> None:
    """Concatenated members (what ``pigz --independent`` or ``cat a.gz b.gz`` writes) are
    one stream: the layer is both members' bytes, its diff ID theirs together. A cut in
    the first 2-6 bytes leaves the next member's magic split between two reads of it
    only by chance; the members here start wherever the cut puts them."""
    tar = lb.tar_bytes(UPPER)
    blob = lb.compress(tar[:cut], compression) + lb.compress(tar[cut:], compression)
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE), "gzip"), lb.Layer(tar, compression, blob=blob))
    assert "etc/motd" in rootfs(convert(layout.path, tmp_path / "out").path)


@pytest.mark.parametrize("compression, padding, error", [
    pytest.param("xz", 4, None, id="xz-stream-padding"),
    pytest.param("xz", 1 << 20, None, id="xz-stream-padding-past-a-read"),
    pytest.param("xz", 3, GARBAGE, id="xz-padding-not-in-fours"),
    pytest.param("gzip", 4, GARBAGE, id="gzip-has-no-padding-between-members"),
    pytest.param("bzip2", 4, GARBAGE, id="bzip2-has-no-padding-between-members"),
])
def test_zeros_between_members(tmp_path: Path, compression: str, padding: int, error: str | None) -> None:
    """The xz file format (1.0.4 section 2.2) allows Stream Padding, null bytes in fours,
    between streams, as ``xz -d`` reads them; gzip and bzip2 have no such thing."""
    tar = lb.tar_bytes(UPPER)
    blob = lb.compress(tar[:512], compression) + bytes(padding) + lb.compress(tar[512:], compression)
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE), "gzip"), lb.Layer(tar, compression, blob=blob))
    if error is None:
        assert "etc/motd" in rootfs(convert(layout.path, tmp_path / "out").path)
        return
    with pytest.raises(InvalidLayer) as info:
        convert(layout.path, tmp_path / "out")
    assert str(info.value).endswith(f"{compression} {error}")


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "xz"])
def test_a_truncated_layer_is_said_to_be_truncated(tmp_path: Path, compression: str) -> None:
    """A blob cut short (its digest the cut blob's) is an invalid layer, named so, before
    its diff ID is compared (which it would fail too)."""
    tar = lb.tar_bytes(UPPER)
    blob = lb.compress(tar, compression)[:-8]
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE), "gzip"), lb.Layer(tar, compression, blob=blob))
    with pytest.raises(InvalidLayer) as info:
        convert(layout.path, tmp_path / "out")
    assert str(info.value).endswith(f"{compression} stream is truncated")
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("delta", [1, -1], ids=["manifest-says-longer", "manifest-says-shorter"])
def test_a_layer_whose_manifest_size_is_wrong_is_a_size_mismatch(tmp_path: Path, delta: int) -> None:
    """The descriptor's size is checked as well as its digest (image-spec descriptor.md:
    the size "SHOULD" be verified), though the digest matches."""
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE), "gzip"), lb.Layer(lb.tar_bytes(UPPER), "gzip"))
    manifest = json.loads(layout.blob(layout.manifest_digest).read_bytes())
    actual = manifest["layers"][1]["size"]
    manifest["layers"][1]["size"] = actual + delta
    data = json.dumps(manifest).encode()
    layout.blob(lb.sha256(data)).write_bytes(data)
    index = json.loads((layout.path / "index.json").read_text())
    index["manifests"][0].update(digest=lb.sha256(data), size=len(data))
    (layout.path / "index.json").write_text(json.dumps(index))
    with pytest.raises(SizeMismatch) as info:
        convert(layout.path, tmp_path / "out")
    assert layout.layer_digests[1] in str(info.value)
    assert (info.value.expected, info.value.actual) == (actual + delta, actual)
    assert listing(tmp_path / "out") == []


def test_missing_layer_blob(tmp_path: Path) -> None:
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE)), lb.Layer(lb.tar_bytes(UPPER)))
    layout.blob(layout.layer_digests[1]).unlink()
    with pytest.raises(ImageNotFound):
        convert(layout.path, tmp_path / "out")
    assert listing(tmp_path / "out") == []


# ---------------------------------------------------------------- unsafe entries


@pytest.mark.parametrize("entry", [
    lb.file("../../etc/cron.d/x", "* * * * * root sh"),
    lb.file("/etc/passwd", "root::0:0::/:/bin/sh"),
    lb.symlink("a", "../../../.."),
    lb.hardlink("x", "../../etc/shadow"),
], ids=["dotdot-name", "absolute-name", "escaping-symlink", "escaping-hardlink"])
def test_case_12_unsafe_entry_is_invalid_layer(tmp_path: Path, entry: lb.Entry) -> None:
    layout = image(tmp_path, lb.Layer(lb.tar_bytes(BASE)), lb.Layer(lb.tar_bytes([lb.file("ok"), entry])))
    with pytest.raises(InvalidLayer) as info:
        convert(layout.path, tmp_path / "out")
    assert info.value.entry == entry.name
    # the source, the layer's position and its digest (the digest alone named no source)
    assert info.value.layer == f"oci:{layout.path} ({Platform.host()}): layer 1 ({layout.layer_digests[1]})"
    assert str(info.value).startswith(f"{info.value.layer}, entry {entry.name!r}: ")
    assert listing(tmp_path / "out") == []


def test_failed_conversion_keeps_the_existing_aci(tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = convert(image(tmp_path / "a", lb.Layer(lb.tar_bytes(BASE))).path, out)
    before = Path(good.path).read_bytes()
    bad = image(tmp_path / "b", lb.Layer(lb.tar_bytes(BASE + [lb.file("../x")])))
    assert bad.path.name == Path(good.path).name.split("-")[0]  # same image name: same file
    with pytest.raises(InvalidLayer):
        convert(bad.path, out)
    assert listing(out) == [Path(good.path).name]
    assert Path(good.path).read_bytes() == before


# ---------------------------------------------------------------- case 18: empty layers


def test_case_18_empty_layers_contribute_nothing(tmp_path: Path) -> None:
    empty_gzip = lb.Layer(bytes(1024), blob=lb.EMPTY_TAR_GZIP,
                          media_type="application/vnd.docker.image.rootfs.diff.tar.gzip")
    assert lb.sha256(empty_gzip.stored()) == lb.EMPTY_TAR_GZIP_DIGEST
    assert lb.sha256(empty_gzip.tar) == lb.EMPTY_TAR_DIFF_ID
    plain = convert(image(tmp_path, lb.Layer(lb.tar_bytes(BASE)), name="plain").path, tmp_path / "o1")
    padded = convert(image(tmp_path, empty_gzip, lb.Layer(b"", "plain"), lb.Layer(lb.tar_bytes(BASE)),
                           lb.Layer(bytes(1024), "plain"), lb.Layer(bytes(1024), "zstd"), empty_gzip,
                           name="padded").path, tmp_path / "o2")
    assert image_files(padded.path) == image_files(plain.path)
    actool_validate(padded.path)


def test_case_18_only_empty_layers(tmp_path: Path) -> None:
    aci = convert(image(tmp_path, lb.Layer(bytes(1024), blob=lb.EMPTY_TAR_GZIP)).path, tmp_path / "out")
    assert image_files(aci.path) == {}
    actool_validate(aci.path)


def test_case_18_no_layers_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidManifest, match="no layers"):
        convert(image(tmp_path).path, tmp_path / "out")
    assert listing(tmp_path / "out") == []


# ---------------------------------------------------------------- the ACI as a whole


def rich_layers() -> list[lb.Layer]:
    """Cases 1, 2, 4, 6, 9, 13, 14, 16 and metadata in one image, across encodings."""
    long_name = "var/lib/yum/yumdb/p/" + "n" * 78
    l0 = lb.tar_bytes([
        lb.dir_("a"), lb.dir_("a/b"), lb.file("a/b/foo", "foo"), lb.file("abc", "abc"),
        lb.file("LINK-A", "X"), lb.hardlink("LINK-Z", "LINK-A"), lb.file("t2", "123"),
        lb.dir_("var"), lb.dir_("var/www"), lb.file("var/www/index", "i"),
        lb.file(long_name, "long"), lb.hardlink("z-long-link", long_name),
        lb.dir_("dev"), lb.chardev("dev/console", 5, 1), lb.fifo("run/ctl"),
        lb.file("bin/su", "su", mode=0o4755, uid=0, gid=0, uname="root", gname="root", mtime=1234567890),
        lb.dir_("tmp", mode=0o1777), lb.file(b"caf\xe9", "latin-1 name"),
    ], lb.USTAR)
    l1 = lb.tar_bytes([
        lb.whiteout("abc"), lb.whiteout("LINK-A"), lb.hardlink("t1", "t2"), lb.hardlink("t3", "t2"),
        lb.dir_("a"), lb.file("a/new", "new"), lb.opaque("a"),
        lb.whiteout("var/www"), lb.symlink("var/www", "/app"), lb.symlink("var/run", "/run"),
        lb.file("ping", "p", pax=lb.xattrs(user_x="v")),
    ])
    l2 = lb.tar_bytes([lb.file("t1", "456")], lb.GNU)
    return [lb.Layer(l0, "gzip"), lb.Layer(l1, "zstd"), lb.Layer(l2, "plain")]


def test_rich_image_converts_to_a_valid_aci(tmp_path: Path) -> None:
    aci = convert(image(tmp_path, *rich_layers()).path, tmp_path / "out")
    tar = aci_tar(aci.path)
    members = lb.read_tar(tar)
    assert [m.name for m in members[:2]] == ["manifest", "rootfs"]
    assert all(m.name.startswith("rootfs/") for m in members[2:])
    assert b"././@LongLink" not in tar
    files = rootfs(aci.path)
    assert "abc" not in files and "LINK-A" not in files and "a/b" not in files
    assert not any(".wh." in n for n in files)
    assert files["LINK-Z"][1] == b"X" and files["a/new"][1] == b"new"
    assert (files["t1"][1], files["t2"][1]) == (b"456", b"123")
    assert files["t3"][0].islnk() and files["t3"][0].linkname == "rootfs/t2"
    assert files["z-long-link"][0].linkname == "rootfs/var/lib/yum/yumdb/p/" + "n" * 78
    assert files["var/www"][0].linkname == "/app" and "var/www/index" not in files
    assert files["var/run"][0].linkname == "/run"
    console = files["dev/console"][0]
    assert (console.ischr(), console.devmajor, console.devminor) == (True, 5, 1)
    assert files["run/ctl"][0].isfifo()
    su = files["bin/su"][0]
    assert (su.mode, su.uname, su.mtime) == (0o4755, "root", 1234567890)
    assert files["tmp"][0].mode == 0o1777
    assert files["ping"][0].pax_headers.get("SCHILY.xattr.user.x") == "v"
    assert "caf\udce9" in files
    assert files["dev/stdout"][0].linkname == "/dev/console"
    actool_validate(aci.path)


def test_case_52_same_input_gives_byte_identical_aci(tmp_path: Path) -> None:
    first = convert(image(tmp_path, *rich_layers(), name="img").path, tmp_path / "out1")
    again = convert(image(tmp_path / "elsewhere", *rich_layers(), name="img").path, tmp_path / "out2")
    same_dir = convert(image(tmp_path, *rich_layers(), name="img").path, tmp_path / "out1")
    data = Path(first.path).read_bytes()
    assert Path(again.path).read_bytes() == data
    assert Path(same_dir.path).read_bytes() == data
    assert first.image_id == again.image_id == same_dir.image_id
    assert listing(tmp_path / "out1") == [Path(first.path).name]


def test_image_id_is_sha512_of_the_uncompressed_aci(tmp_path: Path) -> None:
    aci = convert(image(tmp_path, *rich_layers()).path, tmp_path / "out")
    data = Path(aci.path).read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert aci.image_id == "sha512-" + hashlib.sha512(gzip.decompress(data)).hexdigest()
    assert aci.image_id != "sha512-" + hashlib.sha512(data).hexdigest()
