"""Platforms and platform choice in an image index (containerd's matcher).

Rules: ``../shared/reference/decisions.md`` ("Platform choice"); public cases 26 and 47.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from docker2aci.errors import InvalidManifest, PlatformNotFound
from docker2aci.manifest import ImageIndex, Platform, parse_index, select_platform

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.mark.parametrize("text, expected", [
    pytest.param("linux/amd64", ("linux", "amd64", ""), id="amd64"),
    pytest.param("linux/arm64", ("linux", "arm64", ""), id="arm64"),
    pytest.param("linux/arm64/v8", ("linux", "arm64", ""), id="arm64-v8-is-arm64"),
    pytest.param("linux/arm", ("linux", "arm", "v7"), id="bare-arm-is-v7"),
    pytest.param("linux/arm/v6", ("linux", "arm", "v6"), id="arm-v6"),
    pytest.param("linux/arm/7", ("linux", "arm", "v7"), id="numeric-variant"),
    pytest.param("linux/aarch64", ("linux", "arm64", ""), id="aarch64-alias"),
    pytest.param("linux/x86_64", ("linux", "amd64", ""), id="x86_64-alias"),
    pytest.param("linux/armhf", ("linux", "arm", "v7"), id="armhf-alias"),
    pytest.param("linux/armel", ("linux", "arm", "v6"), id="armel-alias"),
    pytest.param("linux/i386", ("linux", "386", ""), id="i386-alias"),
    pytest.param("LINUX/AMD64", ("linux", "amd64", ""), id="lower-cased"),
    pytest.param("linux/amd64/v1", ("linux", "amd64", ""), id="amd64-v1-is-amd64"),
    pytest.param("linux/amd64/v3", ("linux", "amd64", "v3"), id="amd64-v3-kept"),
    # one word, as containerd's platforms.Parse (docker pull --platform arm64): an
    # architecture of the host's os; the host here is linux (new-user review)
    pytest.param("arm64", ("linux", "arm64", ""), id="one-word-arch"),
    pytest.param("aarch64", ("linux", "arm64", ""), id="one-word-arch-alias"),
    pytest.param("arm", ("linux", "arm", "v7"), id="one-word-bare-arm-is-v7"),
    pytest.param("riscv64", ("linux", "riscv64", ""), id="one-word-riscv64"),
])
def test_parse(text: str, expected: tuple[str, str, str]) -> None:
    p = Platform.parse(text)
    assert (p.os, p.architecture, p.variant) == expected


@pytest.mark.parametrize("text", ["linux/", "/amd64", "linux/arm/v7/x", "", "linux//v7", "bogus", "v7",
                                  # containerd's specifierRe: these were read as platforms (CLI review)
                                  "é/ü", "linux/amd64 v2", "linux/arm:v7", "linux\tx/amd64"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidManifest) as exc:
        Platform.parse(text)
    assert "os/arch" in str(exc.value)


@pytest.mark.parametrize("word", ["linux", "windows", "FreeBSD"])
def test_one_word_that_is_an_os_takes_the_hosts_architecture(word: str) -> None:
    """containerd reads ``--platform linux`` as the host's architecture on that os."""
    host = Platform.host()
    assert Platform.parse(word) == Platform(word.lower(), host.architecture, host.variant)


def test_normalised_equality_and_str() -> None:
    assert Platform.normalised("linux", "arm64", "v8") == Platform.normalised("linux", "arm64", "")
    assert Platform.normalised("linux", "arm") == Platform("linux", "arm", "v7")
    assert str(Platform.normalised("linux", "arm")) == "linux/arm/v7"
    assert str(Platform.normalised("linux", "arm64", "v8")) == "linux/arm64"


@pytest.mark.parametrize("machine, expected", [
    pytest.param("x86_64", "linux/amd64", id="x86_64"),
    pytest.param("aarch64", "linux/arm64", id="aarch64"),
    pytest.param("i686", "linux/386", id="i686"),
    pytest.param("ppc64le", "linux/ppc64le", id="ppc64le"),
    pytest.param("s390x", "linux/s390x", id="s390x"),
    pytest.param("armv7l", "linux/arm/v7", id="armv7l"),
    pytest.param("armv6l", "linux/arm/v6", id="armv6l"),
])
def test_host_platform_from_uname(monkeypatch: pytest.MonkeyPatch, machine: str, expected: str) -> None:
    import os

    real = os.uname()
    monkeypatch.setattr(os, "uname", lambda: os.uname_result((*real[:4], machine)))
    assert str(Platform.host()) == expected


def _index(*platforms: dict[str, Any] | None) -> ImageIndex:
    """An index (parsed from JSON bytes) with one entry per platform; entry i's digest
    is the sha256 of ``str(i)`` so the test can tell which one was chosen."""
    entries = []
    for i, plat in enumerate(platforms):
        entry: dict[str, Any] = {"mediaType": OCI_MANIFEST, "size": 100 + i,
                                 "digest": "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()}
        if plat is not None:
            entry["platform"] = plat
        entries.append(entry)
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return parse_index(json.dumps(doc).encode(), "test index")


def P(arch: str, variant: str | None = None, os_name: str = "linux") -> dict[str, Any]:
    out = {"os": os_name, "architecture": arch}
    if variant is not None:
        out["variant"] = variant
    return out


def _chosen(index: ImageIndex, wanted: str) -> int:
    desc = select_platform(index, Platform.parse(wanted), "test index")
    return [d.digest for d in index.manifests].index(desc.digest)


SELECT = [
    pytest.param([P("amd64"), P("arm64", "v8")], "linux/arm64", 1, id="arm64-matches-arm64-v8"),
    pytest.param([P("amd64"), P("arm64")], "linux/arm64/v8", 1, id="arm64-v8-matches-arm64"),
    pytest.param([P("arm", "v6"), P("arm", "v7"), P("arm64")], "linux/arm", 1, id="bare-arm-means-v7"),
    pytest.param([P("arm")], "linux/arm/v7", 0, id="entry-bare-arm-is-v7"),
    pytest.param([P("arm", "v6"), P("arm", "v7")], "linux/arm/v7", 1, id="prefer-v7-over-v6"),
    pytest.param([P("arm", "v7"), P("arm", "v6")], "linux/arm/v7", 0, id="prefer-v7-over-v6-any-order"),
    pytest.param([P("arm", "v8"), P("arm", "v6")], "linux/arm/v7", 1, id="v7-accepts-v6-never-v8"),
    pytest.param([P("arm", "v5"), P("arm", "v6")], "linux/arm/v7", 1, id="highest-lower-variant"),
    pytest.param([P("arm", "v6"), P("arm", "v5")], "linux/arm/v7", 0, id="highest-lower-variant-any-order"),
    pytest.param([P("amd64", os_name="windows"), P("amd64")], "linux/amd64", 1, id="os-must-match"),
    pytest.param([None, P("amd64")], "linux/amd64", 1, id="entry-without-platform-skipped"),
    pytest.param([P("amd64"), P("amd64")], "linux/amd64", 0, id="ties-keep-index-order"),
    pytest.param([P("x86_64"), P("arm64")], "linux/amd64", 0, id="entry-alias-normalised"),
    # a registry's odd variants are no match, never a crash: "\u00b2".isdigit() is true but
    # int() refuses it, and int() refuses thousands of digits
    pytest.param([P("arm", "v\u00b2"), P("arm", "v6")], "linux/arm/v7", 1, id="non-ascii-digit-variant"),
    pytest.param([P("arm", "v" + "1" * 5000), P("arm", "v6")], "linux/arm/v7", 1, id="huge-variant"),
]


@pytest.mark.parametrize("platforms, wanted, expected", SELECT)
def test_select_platform(platforms: list[dict[str, Any] | None], wanted: str, expected: int) -> None:
    assert _chosen(_index(*platforms), wanted) == expected


def test_a_tie_of_other_images_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Two entries for one platform: the first is converted, as before, and said so
    (with ``--platform all`` the second was dropped without a word)."""
    index = _index(P("arm64"), P("amd64"), P("amd64"), P("amd64", "v2"))
    with caplog.at_level(logging.WARNING, logger="docker2aci.manifest"):
        assert _chosen(index, "linux/amd64") == 1
    first, second = (index.manifests[i].digest for i in (1, 2))
    assert caplog.messages == [f"test index: 2 images for platform linux/amd64; using the first, {first} "
                               f"(not {second})"]


@pytest.mark.parametrize(("platforms", "wanted"), [
    pytest.param([P("amd64"), P("arm64")], "linux/amd64", id="one-match"),
    pytest.param([P("arm", "v6"), P("arm", "v7")], "linux/arm/v7", id="better-match-is-no-tie"),
    pytest.param([P("arm", "v7"), P("arm", "v6"), P("arm", "v6")], "linux/arm/v7", id="ties-below-the-best"),
])
def test_no_tie_no_warning(platforms: list[dict[str, Any]], wanted: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="docker2aci.manifest"):
        select_platform(_index(*platforms), Platform.parse(wanted), "test index")
    assert caplog.messages == []


def test_a_tie_names_each_other_image_once(caplog: pytest.LogCaptureFixture) -> None:
    first = {"mediaType": OCI_MANIFEST, "size": 100, "digest": "sha256:" + "a" * 64, "platform": P("amd64")}
    other = {**first, "digest": "sha256:" + "b" * 64}
    index = parse_index(json.dumps({"schemaVersion": 2, "manifests": [first, other, other]}).encode(), "test index")
    with caplog.at_level(logging.WARNING, logger="docker2aci.manifest"):
        select_platform(index, Platform.parse("linux/amd64"), "test index")
    assert caplog.messages == [f"test index: 2 images for platform linux/amd64; using the first, sha256:{'a' * 64} "
                               f"(not sha256:{'b' * 64})"]


def test_an_index_of_many_ties_is_chosen_in_linear_time(caplog: pytest.LogCaptureFixture) -> None:
    """A 4 MiB index (the manifest limit) of 20,000 images for one platform: the tie check
    compared each entry with every earlier one (51 s here), and the warning listed them all."""
    from test_hostile import within

    entries = [{"mediaType": OCI_MANIFEST, "size": 100, "digest": f"sha256:{i:064x}", "platform": P("amd64")}
               for i in range(20000)]
    index = parse_index(json.dumps({"schemaVersion": 2, "manifests": entries}).encode(), "test index")
    with caplog.at_level(logging.WARNING, logger="docker2aci.manifest"):
        chosen = within(10, select_platform, index, Platform.parse("linux/amd64"), "test index")
    assert chosen.digest == index.manifests[0].digest
    assert caplog.messages == [f"test index: 20000 images for platform linux/amd64; using the first, sha256:{0:064x} "
                               f"(not sha256:{1:064x}, sha256:{2:064x}, sha256:{3:064x} and 19996 more)"]


def test_the_platforms_of_a_large_index_are_listed_in_linear_time() -> None:
    """``--platform all`` lists an index's platforms once each: a list searched for every
    entry took 33 s for a 4 MiB index of 17,000 distinct platforms."""
    from test_hostile import within

    from docker2aci.digest import Digest
    from docker2aci.manifest import Document, index_platforms

    entries = [{"mediaType": OCI_MANIFEST, "size": 100, "digest": f"sha256:{i:064x}", "platform": P("amd64", f"v{i}")}
               for i in range(17000)]
    entries.append(entries[5])
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    index = Document(raw, OCI_INDEX, Digest.parse("sha256:" + hashlib.sha256(raw).hexdigest()), "index")
    platforms = within(10, index_platforms, index, "test index")
    assert len(platforms) == 17000
    assert (str(platforms[5]), str(platforms[-1])) == ("linux/amd64/v5", "linux/amd64/v16999")


def test_the_same_image_listed_twice_is_no_tie(caplog: pytest.LogCaptureFixture) -> None:
    entry = {"mediaType": OCI_MANIFEST, "size": 100, "digest": "sha256:" + "a" * 64, "platform": P("amd64")}
    index = parse_index(json.dumps({"schemaVersion": 2, "manifests": [entry, entry]}).encode(), "test index")
    with caplog.at_level(logging.WARNING, logger="docker2aci.manifest"):
        select_platform(index, Platform.parse("linux/amd64"), "test index")
    assert caplog.messages == []


NO_MATCH = [
    pytest.param([P("arm", "v8")], "linux/arm/v7", "linux/arm/v8", id="never-a-higher-variant"),
    pytest.param([P("arm")], "linux/arm/v6", "linux/arm/v7", id="bare-arm-entry-too-new-for-v6"),
    pytest.param([P("amd64"), P("arm64", "v8")], "linux/s390x", "linux/amd64, linux/arm64", id="lists-present"),
    pytest.param([P("arm64")], "linux/arm", "linux/arm64", id="arm-is-not-arm64"),
    pytest.param([None], "linux/amd64", "none", id="no-platforms-at-all"),
    pytest.param([], "linux/amd64", "none", id="empty-index"),
]


@pytest.mark.parametrize("platforms, wanted, present", NO_MATCH)
def test_no_match_lists_what_is_there(platforms: list[dict[str, Any] | None], wanted: str, present: str) -> None:
    with pytest.raises(PlatformNotFound) as exc:
        select_platform(_index(*platforms), Platform.parse(wanted), "test index")
    assert f"(present: {present})" in str(exc.value)
    assert str(Platform.parse(wanted)) in str(exc.value)
    assert exc.value.source == "test index"


@pytest.mark.parametrize(("platform", "suffix"), [
    pytest.param("linux/amd64", "-linux-amd64", id="amd64"),
    pytest.param("linux/amd64/v1", "-linux-amd64", id="amd64-v1-is-the-baseline"),
    pytest.param("linux/amd64/v3", "-linux-amd64-v3", id="amd64-v3-named"),
    pytest.param("linux/arm64/v8", "-linux-aarch64", id="arm64-v8-is-the-baseline"),
    pytest.param("linux/arm64/v8.2", "-linux-aarch64-v8.2", id="arm64-v8.2-named"),
    pytest.param(("linux", "arm64", "../../x"), "-linux-aarch64", id="arm64-odd-variant-never-in-a-file-name"),
    pytest.param("linux/arm/v6", "-linux-armv6l", id="arm-variant-is-in-the-arch"),
    pytest.param("linux/arm", "-linux-armv7l", id="bare-arm-is-v7"),
])
def test_file_platform_suffix(platform: str | tuple[str, str, str], suffix: str) -> None:
    """decisions.md ("File name"): ``-<os>-<arch>[-<variant>]``, the variant where appc's
    arch does not carry it and it is not the baseline (an index's variant may be any
    text: only ``vN[.M]`` is ever part of a file name)."""
    from converters.names import file_platform_suffix

    parsed = Platform.parse(platform) if isinstance(platform, str) else Platform.normalised(*platform)
    assert file_platform_suffix(parsed.os, parsed.architecture, parsed.variant) == suffix


def test_platform_all_names_each_variant(tmp_path: Path) -> None:
    """An index of linux/amd64 and linux/amd64/v3 (an OCI layout built here, as the
    image-layout and image-index specs lay it out; distributions publish such v3 builds):
    both were to be written to ``…-linux-amd64.aci`` and ``--platform all`` stopped at
    the second ("written earlier in the same run")."""
    import hostilebuild as hb

    import docker2aci

    layout = tmp_path / "layout"
    layer = hb.tar([hb.dir_("etc"), hb.file("etc/passwd", hb.PASSWD)])
    entries = []
    for variant in ("", "v3"):
        config = hb.image_config([layer], architecture="amd64", **({"variant": variant} if variant else {}))
        image = hb.oci_layout(layout, [layer], config=config)
        platform = {"os": "linux", "architecture": "amd64", **({"variant": variant} if variant else {})}
        entries.append({**image.descriptor(image.manifest, hb.OCI_MANIFEST), "platform": platform})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": entries}).encode()
    hb.put_blob(layout, index)
    hb.write_index(layout, [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:"
                             + hb.sha256(index), "size": len(index), "annotations": {hb.REF_NAME: "latest"}}])

    acis = docker2aci.convert(f"oci:{layout}", docker2aci.ConvertOptions(
        output_dir=str(tmp_path / "out"), platform="all", cache_dir=str(tmp_path / "cache")))

    assert sorted(Path(a.path).name for a in acis) == ["layout-latest-linux-amd64-v3.aci",
                                                      "layout-latest-linux-amd64.aci"]


# -- images whose index and config disagree, and --platform all (buildah-made indexes) ---------

needs_buildah = pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")


def buildah_index(work: Path, images: list[tuple[str, tuple[str, ...]]], dest: str) -> None:
    """Make an image index with buildah 1.28, as a build system does: ``buildah manifest
    create``, one ``buildah manifest add [FLAGS] LIST SOURCE`` per image (``--os`` and
    ``--arch`` set the entry's platform whatever the image's config says), then
    ``buildah manifest push --all LIST DEST``. buildah's storage (vfs) and its signature
    policy are in ``work``, removed after."""
    policy = work / "policy.json"
    work.mkdir(parents=True)
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    buildah = ["buildah", "--root", str(work / "root"), "--runroot", str(work / "run"), "--storage-driver", "vfs"]
    try:
        for argv in (["manifest", "create", "list"],
                     *(["manifest", "add", *flags, "list", source] for source, flags in images),
                     ["manifest", "push", "--signature-policy", str(policy), "--all", "list", dest]):
            subprocess.run([*buildah, *argv], check=True, capture_output=True)
    finally:
        shutil.rmtree(work)


def _umoci_image(layout: Path, architecture: str) -> None:
    """A one-layer image tagged ``latest`` made by umoci, of ``linux/<architecture>``."""
    import hostilebuild as hb

    layer = layout.parent / "layer.tar"
    layer.write_bytes(hb.tar([hb.dir_("etc"), hb.file("etc/passwd", hb.PASSWD)]))
    for argv in (["init", "--layout", layout], ["new", "--image", f"{layout}:latest"],
                 ["raw", "add-layer", "--image", f"{layout}:latest", layer],
                 ["config", "--image", f"{layout}:latest", "--os", "linux", "--architecture", architecture]):
        subprocess.run(["umoci", *map(str, argv)], check=True, capture_output=True)


def _convert(source: str, out: Path, **options: Any) -> list[Any]:
    import docker2aci

    options.setdefault("cache_dir", str(out.parent / "cache"))
    return docker2aci.convert(source, docker2aci.ConvertOptions(output_dir=str(out), **options))


@pytest.mark.tools
@needs_buildah
def test_an_index_entry_that_is_not_its_config_s_platform_is_converted_as_the_config_says(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An index entry saying linux/arm64 for an image whose config says amd64 (buildah
    ``manifest add --arch arm64``) converted without a word (sources review). Docker
    warns naming both and keeps the configured platform (moby ``pullForBuilder``): so do
    we, labels and file name included."""
    from services import SHARED_IMAGES

    layout = tmp_path / "mislabelled"
    buildah_index(tmp_path / "buildah", [(f"oci:{SHARED_IMAGES / 'oci-layout'}:latest", ("--arch", "arm64"))],
                  f"oci:{layout}:multi")
    warning = ("the index entry says platform linux/arm64, but the image config says linux/amd64; converted as "
               "linux/amd64, as the config says (the image's builder got one of them wrong)")
    with caplog.at_level(logging.WARNING, logger="docker2aci"):
        [aci] = _convert(f"oci:{layout}:multi", tmp_path / "out", platform="linux/arm64")
    assert (aci.labels["os"], aci.labels["arch"]) == ("linux", "amd64")
    assert aci.warnings == (warning,)
    assert caplog.messages == [f"oci:{layout}:multi (linux/arm64): {warning}"]
    [every] = _convert(f"oci:{layout}:multi", tmp_path / "all", platform="all")
    assert (Path(every.path).name, every.labels["arch"], every.warnings) == ("mislabelled-multi-linux-amd64.aci",
                                                                             "amd64", (warning,))


def _config_of(layout: Path, tag: str, index_entry: int) -> Path:
    """The config blob of an image index's entry, in a layout."""
    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")

    [top] = [e for e in json.loads((layout / "index.json").read_text())["manifests"]
             if e["annotations"]["org.opencontainers.image.ref.name"] == tag]
    entry = json.loads(blob(top["digest"]).read_text())["manifests"][index_entry]
    return blob(json.loads(blob(entry["digest"]).read_text())["config"]["digest"])


@pytest.mark.tools
@needs_buildah
def test_platform_all_writes_every_platform_or_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``--platform all`` kept the linux/amd64 ACI written before linux/arm64 failed, and
    said nothing of it (sources review). Like a ``--nosquash`` chain, and like a batch,
    whose output directory holds only what it reports ``ok``, the platforms are written
    together or not at all: the files a failed run would replace stay as they were."""
    from services import SHARED_IMAGES

    from docker2aci.compression import Compression
    from docker2aci.errors import DigestMismatch

    layout = tmp_path / "multi"
    buildah_index(tmp_path / "buildah", [(f"oci:{SHARED_IMAGES / 'oci-multi'}:latest", ()),
                                         (f"oci:{SHARED_IMAGES / 'oci-multi'}:arm64", ())], f"oci:{layout}:multi")
    out = tmp_path / "out"
    first = _convert(f"oci:{layout}:multi", out, platform="all")
    names = ["multi-multi-linux-aarch64.aci", "multi-multi-linux-amd64.aci"]
    assert sorted(Path(a.path).name for a in first) == names
    before = {name: (out / name).read_bytes() for name in names}

    killed = out / ".docker2aci-platforms-killed"  # what a run killed before publishing leaves
    killed.mkdir()
    (killed / names[0]).write_bytes(b"half")
    killed.with_name(killed.name + ".lock").touch()
    config = _config_of(layout, "multi", 1)  # linux/arm64's, damaged as a disk or a copy can
    config.chmod(0o644)
    config.write_bytes(config.read_bytes().replace(b'"arm64"', b'"arm65"'))
    with caplog.at_level(logging.WARNING, logger="docker2aci"), pytest.raises(DigestMismatch):
        _convert(f"oci:{layout}:multi", out, platform="all", compression=Compression.NONE)
    assert sorted(os.listdir(out)) == names  # no staging directory left, nor the killed run's
    assert {name: (out / name).read_bytes() for name in names} == before
    assert caplog.messages == [(f"oci:{layout}:multi: platform linux/arm64 failed, so none of the 2 platforms is "
                                "written (converted before it: linux/amd64)")]

    fresh = tmp_path / "fresh"
    proc = subprocess.run([sys.executable, "-m", "docker2aci", "--json", "--platform", "all", "--output-dir",
                           str(fresh), "--cache-dir", str(tmp_path / "cache"), f"oci:{layout}:multi"],
                          check=False, capture_output=True, text=True, timeout=300)
    assert (proc.returncode, os.listdir(fresh)) == (1, [])
    assert json.loads(proc.stdout)["status"] == "failed"  # --json: the failure's entry, nothing written
    assert f"oci:{layout}:multi: platform linux/arm64 failed, so none of the 2 platforms is written" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"Error: conversion error: oci:{layout}:multi: blob sha256:")


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
@pytest.mark.parametrize(("platform", "asked"), [
    pytest.param(None, f"{Platform.host()}, the host's", id="default"),
    pytest.param("linux/arm64", "linux/arm64", id="asked-for"),
])
def test_an_image_appc_cannot_name_names_its_platform_and_the_one_asked_for(tmp_path: Path, platform: str | None,
                                                                             asked: str) -> None:
    """The error named the platform the image has (in the message) and the one asked for
    (in parentheses after the source) without saying which was which (sources review)."""
    from docker2aci.errors import InvalidConfig

    layout = tmp_path / "rv"
    _umoci_image(layout, "riscv64")
    with pytest.raises(InvalidConfig) as info:
        _convert(f"oci:{layout}", tmp_path / "out", platform=platform)
    assert str(info.value) == (f"oci:{layout} ({asked.split(',')[0]}): image config field architecture: platform "
                               f"linux/riscv64 has no appc os/arch equivalent (the image is linux/riscv64; asked "
                               f"for {asked})")


@pytest.mark.tools
@needs_buildah
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
def test_platform_all_of_an_index_appc_cannot_name_lists_its_platforms(tmp_path: Path) -> None:
    """The error "no platform of the index can be converted" named none of them (sources review)."""
    layout, index = tmp_path / "rv", tmp_path / "index"
    _umoci_image(layout, "riscv64")
    subprocess.run(["umoci", "config", "--image", f"{layout}:latest", "--tag", "mips", "--architecture", "mips64le"],
                   check=True, capture_output=True)
    buildah_index(tmp_path / "buildah", [(f"oci:{layout}:latest", ()), (f"oci:{layout}:mips", ())],
                  f"oci:{index}:multi")
    with pytest.raises(InvalidManifest) as info:
        _convert(f"oci:{index}:multi", tmp_path / "out", platform="all")
    assert str(info.value) == (f"oci:{index}:multi: no platform of the index can be converted: appc names none of "
                               "linux/riscv64, linux/mips64le")


@pytest.mark.tools
@needs_buildah
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
def test_attestation_manifests_are_neither_images_nor_platforms(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """An index as ``docker buildx build`` writes it, with an attestation manifest
    (``vnd.docker.reference.type: attestation-manifest``, platform ``unknown/unknown``)
    beside each image: ``--platform all`` warned that it skipped platform
    ``unknown/unknown``, ``--platform unknown/unknown`` chose an attestation as the image,
    and a platform not there listed ``unknown/unknown`` as present (sources review). buildx is
    not installed here; buildah writes the same entry from an umoci image with
    ``manifest add --annotation``."""
    amd64, arm64, attestation, index = (tmp_path / n for n in ("amd64", "arm64", "attestation", "index"))
    _umoci_image(amd64, "amd64")
    _umoci_image(arm64, "arm64")
    _umoci_image(attestation, "amd64")
    subprocess.run(["umoci", "config", "--image", f"{attestation}:latest", "--os", "unknown", "--architecture",
                    "unknown"], check=True, capture_output=True)
    image_digest = json.loads((amd64 / "index.json").read_text())["manifests"][0]["digest"]
    attest = ("--annotation", "vnd.docker.reference.type=attestation-manifest",
              "--annotation", f"vnd.docker.reference.digest={image_digest}")
    buildah_index(tmp_path / "buildah", [(f"oci:{amd64}:latest", ()), (f"oci:{attestation}:latest", attest),
                                         (f"oci:{arm64}:latest", ())], f"oci:{index}:multi")
    [top] = json.loads((index / "index.json").read_text())["manifests"]

    with caplog.at_level(logging.WARNING, logger="docker2aci"):
        every = _convert(f"oci:{index}:multi", tmp_path / "out", platform="all")
    assert sorted((Path(a.path).name, a.labels["arch"]) for a in every) == [
        ("index-multi-linux-aarch64.aci", "aarch64"), ("index-multi-linux-amd64.aci", "amd64")]
    assert caplog.messages == []
    for platform in ("unknown/unknown", "linux/s390x"):
        with pytest.raises(PlatformNotFound) as info:
            _convert(f"oci:{index}:multi", tmp_path / "none", platform=platform)
        assert str(info.value) == (f"oci:{index}:multi: {top['digest']}: no image for platform {platform} "
                                   "(present: linux/amd64, linux/arm64)")


@pytest.mark.parametrize("earlier", [b"the ACI of an earlier run", None], ids=["replaced", "new"])
def test_platform_all_puts_back_what_it_moved_when_a_file_cannot_be_moved(tmp_path: Path,
                                                                          earlier: bytes | None) -> None:
    """``--platform all`` moved its staged ACIs into place one by one and stopped at the
    first that could not be moved (here a directory at its name; as well another user's
    file in a sticky directory): the platforms moved before it stayed written, with exit
    status 1, though the run writes every platform or none (review of the staging). A file
    a move replaces is now kept as a link in the staging directory and put back, one that
    was not there is removed."""
    from services import SHARED_IMAGES

    from docker2aci.errors import OutputError

    out = tmp_path / "out"
    amd64, arm64 = out / "oci-multi-multi-linux-amd64.aci", out / "oci-multi-multi-linux-aarch64.aci"
    arm64.mkdir(parents=True)  # linux/arm64 comes second in the index
    if earlier is not None:
        amd64.write_bytes(earlier)
    with pytest.raises(OutputError) as info:
        _convert(f"oci:{SHARED_IMAGES / 'oci-multi'}:multi", out, platform="all")
    assert sorted(os.listdir(out)) == sorted(p.name for p in (amd64, arm64) if earlier is not None or p == arm64)
    assert earlier is None or amd64.read_bytes() == earlier
    assert arm64.is_dir()
    assert str(info.value) == f"writing {arm64}: Is a directory: none of the 2 ACIs is written"
