"""Fuzz the squash: 1-3 layer tars → ``RootfsTree.from_layers`` (or layer by layer with
``apply``) → the appc manifest (``docker2aci.translate``) → an ACI written into the
input's own temporary directory (``docker2aci.aci.write_aci``), then per-layer writes.

Checks, besides "only documented errors": the output directory holds the ACI alone and
nothing appears anywhere else (see ``fuzzlib.Sandbox``), and the ACI is sound: it reads
back as a tar; ``manifest`` then ``rootfs`` then only ``rootfs/...`` names, each once; no
whiteout name; every hard link names an earlier entry; no relative symlink climbs out.

Input: a mode (raw tars, raw tars with fixed checksums, or tars built from the fuzzer's
choices of names, types and link targets), then the layers.

Run: ``python tests/fuzz/fuzz_squash.py [libFuzzer args] [CORPUS_DIR...]``.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile

import atheris
import fuzzlib

with atheris.instrument_imports(include=["docker2aci", "converters"]):
    from converters.manifest import ImageConfig, Naming, manifest_bytes
    from converters.rootfs import LayerTar, RootfsTree
    from converters.tarpaths import clean_member_name, is_escaping_link
    from converters.tarwriter import TarWriter
    from docker2aci.aci import Compression, write_aci
    from docker2aci.translate import image_manifest

fuzzlib.instrument_tarfile()

_PARTS = ("a", "b", "c", "etc", "passwd", "dev", "stdin", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh..wh.plnk",
          ".wh..wh.aufs", ".", "..", "", "x y", "\u00e9", "lnk", "d")
_KINDS = (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
          tarfile.CHRTYPE, tarfile.AREGTYPE, tarfile.BLKTYPE, tarfile.CONTTYPE, b"S", b"Z")
_CONFIG = ImageConfig(user="a", entrypoint=("/bin/sh",), env=("A=1",))
_NAMING = Naming("example.com/fuzz", "fuzz", "latest", "example.com/fuzz:latest", None,
                 "sha256:" + "0" * 64, "sha256:" + "1" * 64)
MAX_LAYERS = 3


def _path(fdp: atheris.FuzzedDataProvider) -> str:
    depth = fdp.ConsumeIntInRange(1, 4)
    parts = [fdp.PickValueInList(list(_PARTS)) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(4)
             for _ in range(depth)]
    prefix = fdp.PickValueInList(["", "", "./", "/"])
    return prefix + "/".join(parts) + ("/" if fdp.ConsumeIntInRange(0, 7) == 0 else "")


def _built_layer(fdp: atheris.FuzzedDataProvider) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tf:
        for _ in range(fdp.ConsumeIntInRange(0, 10)):
            info = tarfile.TarInfo(_path(fdp))
            info.type = fdp.PickValueInList(list(_KINDS))
            info.mode = fdp.ConsumeIntInRange(0, 0o7777)
            info.uid, info.gid = fdp.ConsumeIntInRange(0, 70000), fdp.ConsumeIntInRange(0, 70000)
            info.mtime = fdp.ConsumeIntInRange(0, 1 << 34)
            if fdp.ConsumeBool():
                info.pax_headers = {"SCHILY.xattr.user.k": fdp.ConsumeUnicodeNoSurrogates(4)}
            data = None
            if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = _path(fdp)
            elif info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                content = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
                info.size = len(content)
                data = io.BytesIO(content)
            tf.addfile(info, data)
    return buf.getvalue()


def _layers(data: bytes) -> tuple[int, list[bytes]]:
    """Byte 0: the mode; byte 1: the layer count; then the built layers' choices, or the
    raw tars, each but the last behind its 4-byte little-endian length."""
    if len(data) < 2:
        return 0, [data]
    mode, count, rest = data[0] % 4, 1 + data[1] % MAX_LAYERS, data[2:]
    if mode >= 2:
        fdp = atheris.FuzzedDataProvider(rest)
        return mode, [_built_layer(fdp) for _ in range(count)]
    tars = []
    for _ in range(count - 1):
        size = int.from_bytes(rest[:4], "little")
        tars.append(rest[4:4 + size])
        rest = rest[4 + size:]
    tars.append(rest)
    if mode == 1:
        tars = [fuzzlib.fix_checksums(t) for t in tars]
    return mode, tars


def _check_aci(path: str) -> None:
    with tarfile.open(path, "r:") as tf:
        names = [m.name for m in tf.getmembers()]
        assert names[:2] == ["manifest", "rootfs"], names[:2]
        assert len(set(names)) == len(names), f"duplicate names in the ACI: {names}"
        seen: set[str] = set()
        for member in tf.getmembers()[2:]:
            assert member.name.startswith("rootfs/"), member.name
            rel = clean_member_name(member.name[len("rootfs/"):])
            assert rel, member.name
            assert not any(p.startswith(".wh.") for p in rel), f"whiteout name emitted: {member.name!r}"
            if member.islnk():
                assert member.linkname in seen, f"hard link {member.name!r} -> {member.linkname!r} dangles"
            if member.issym():
                assert not is_escaping_link(rel, member.linkname), f"escaping symlink {member.name!r}"
            seen.add(member.name)


@fuzzlib.with_workdir
def test_one(data: bytes, workdir: str) -> None:
    mode, tars = _layers(data)
    layers = [LayerTar(f"layer-{i}", io.BytesIO(t)) for i, t in enumerate(tars)]
    if mode == 3:
        tree = RootfsTree(layers)
        for _ in layers:
            tree.apply(check=True)
    else:
        tree = RootfsTree.from_layers(layers)
    tree.add_stdio_links()
    warnings: list[str] = []
    manifest = manifest_bytes(image_manifest("fuzz", tree, _CONFIG, _NAMING, ("linux", "amd64"), warnings))
    out = os.path.join(workdir, "out.aci")
    image_id = write_aci(out, manifest, tree, Compression.NONE)
    assert image_id.startswith("sha512-") and len(image_id) == 7 + 128, image_id
    left = os.listdir(workdir)
    assert left == ["out.aci"], f"the ACI's directory holds {left}"
    _check_aci(out)
    for index in range(len(layers)):
        with TarWriter(io.BytesIO()) as writer:
            tree.write(writer, layer=index)


def _encode(layers: list[bytes]) -> bytes:
    """Raw-mode input that :func:`_layers` decodes back into ``layers``."""
    out = bytes([0, len(layers) - 1])
    for tar in layers[:-1]:
        out += len(tar).to_bytes(4, "little") + tar
    return out + layers[-1]


def seeds() -> list[bytes]:
    t = fuzzlib.tar_bytes
    base = t([("etc/", b"", "dir"), ("etc/passwd", b"root:x:0:0::/root:/bin/sh\na:x:5:7::/:/bin/sh\n"),
              ("bin/sh", b"\x7fELF"), ("bin/ash", b"bin/sh", "link"), ("usr/bin/env", b"../../bin/sh", "sym"),
              ("dev/null", b"", "chr"), ("run/fifo", b"", "fifo"), ("opt/d/", b"", "dir"), ("opt/d/f", b"1")])
    upper = t([("etc/.wh.passwd", b""), ("opt/d/.wh..wh..opq", b""), ("opt/d/g", b"2"),
               ("bin/sh2", b"bin/ash", "link"), ("bin/.wh.sh", b""), ("abs", b"/etc", "sym")])
    aufs = t([(".wh..wh.plnk/", b"", "dir"), (".wh..wh.plnk/1.2", b"x"), ("h", b".wh..wh.plnk/1.2", "link")])
    top = t([("usr/bin", b"", "file"), ("usr/bin/x", b"y"), ("etc", b"/", "sym")])
    out = [_encode([base]), _encode([base, upper]), _encode([base, upper, top]), _encode([aufs]),
           _encode([t([]), base])]
    out += [b"\2\0" + bytes(range(256)), b"\3\2" + bytes(range(255, -1, -1)) * 2, b"\2\1" + bytes(512)]
    return out


if __name__ == "__main__":
    fuzzlib.main("squash", test_one, seeds, max_len=256 * 1024)
    sys.exit(0)
