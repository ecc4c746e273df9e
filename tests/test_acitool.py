"""docker2aci validate / inspect / render on real ACIs (ours, and actool's) and on broken
ones written here (what no tool writes: each breaks one appc rule), with actool's own
verdict beside ours: actool 0.8.11 lets a hard link to a missing entry and a relative
pathWhitelist entry through."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "images" / "oci-archive.tar"
ACTOOL = shutil.which("actool")
MANIFEST = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/test",
            "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}]}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docker2aci", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def _aci(path: Path, entries: list[tuple[str, bytes, str]], manifest: dict | None = MANIFEST) -> Path:
    """A gzip ACI: ``manifest`` (unless None) then ``(name, type, data-or-linkname)`` entries."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        if manifest is not None:
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo("manifest")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(extra)
                tar.addfile(info, io.BytesIO(extra.encode()))
            else:
                info.linkname = extra
                tar.addfile(info)
    return path


ROOTFS = ("rootfs", tarfile.DIRTYPE, "")
APP = {"exec": ["/bin/sh"], "user": "0", "group": "0"}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not ARCHIVE.exists():
        pytest.skip(f"{ARCHIVE} not found")
    out = tmp_path_factory.mktemp("aci")
    result = _cli("--output-dir", str(out), str(ARCHIVE))
    assert result.returncode == 0, result.stderr
    return out / "test-busybox-latest.aci"


def test_a_converted_aci_is_valid_and_inspected(converted: Path) -> None:
    result = _cli("validate", "--json", str(converted))
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["problems"] == []
    info = json.loads(_cli("inspect", "--json", str(converted)).stdout)
    assert info["image_id"] == report["image_id"] and info["name"] == "test/busybox"
    assert (info["compression"], info["layers"], info["dependencies"]) == ("gzip", 1, [])
    assert info["labels"] == {"os": "linux", "arch": "amd64", "version": "latest"}
    assert info["size"] == converted.stat().st_size and info["entries"] > 20


@pytest.mark.parametrize(("entries", "manifest", "problem", "actool_accepts"), [
    ([ROOTFS, ("rootfs/a", tarfile.REGTYPE, "1"), ("rootfs/a", tarfile.REGTYPE, "2")], MANIFEST,
     "entry 'rootfs/a': given twice", False),
    ([ROOTFS, ("extra", tarfile.REGTYPE, "x")], MANIFEST,
     "entry 'extra': only 'manifest' and 'rootfs/' may be at the top", False),
    ([ROOTFS, ("rootfs/l", tarfile.LNKTYPE, "rootfs/missing")], MANIFEST,
     "entry 'rootfs/l': hard link to 'rootfs/missing', which is not an earlier entry", True),
    ([ROOTFS], {**MANIFEST, "pathWhitelist": ["etc/passwd"]},
     "manifest: pathWhitelist entry 'etc/passwd' is not an absolute path", True),
    ([ROOTFS], {**MANIFEST, "name": "Example.com/Test"}, "manifest: name 'Example.com/Test' is not an AC identifier",
     False),
    ([ROOTFS], {**MANIFEST, "labels": [{"name": "os", "value": "linux"}, {"name": "os", "value": "darwin"}]},
     "manifest: labels: label 'os' given twice", False),
    ([ROOTFS], None, "no manifest entry", False),
    ([ROOTFS], {**MANIFEST, "dependencies": [{"imageName": "base", "imageID": "md5-1"}]},
     "manifest: dependencies[0].imageID 'md5-1' is not sha512-<hex>", False),

    # what actool 0.8.11 refuses and validate once let through (each breaks one rule of spec/types.md)
    ([ROOTFS], {**MANIFEST, "labels": [{"name": "os", "value": "plan9"}]},
     "manifest: labels: os 'plan9' is not one of darwin, freebsd, linux", False),
    ([ROOTFS], {**MANIFEST, "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "riscv64"}]},
     ("manifest: labels: arch 'riscv64' is not one of amd64, i386, aarch64, aarch64_be, armv6l, armv7l, armv7b, "
      "ppc64, ppc64le, s390x (os linux)"), False),
    ([ROOTFS], {**MANIFEST, "labels": [{"name": "name", "value": "x"}]},
     "manifest: labels: 'name' is not a label name", False),
    ([ROOTFS], {**MANIFEST, "annotations": [{"name": "Bad Name", "value": "x"}]},
     "manifest: annotations: 'Bad Name' is not an AC identifier", False),
    ([ROOTFS], {**MANIFEST, "annotations": [{"name": "a", "value": "x"}, {"name": "a", "value": "y"}]},
     "manifest: annotations: 'a' given twice", False),
    ([ROOTFS], {**MANIFEST, "annotations": {"a": "b"}}, "manifest: annotations is not a list", False),
    ([ROOTFS], {**MANIFEST, "annotations": [{"name": "created", "value": "yesterday"}]},
     "manifest: annotations: created 'yesterday' is not an RFC 3339 date", False),
    ([ROOTFS], {**MANIFEST, "annotations": [{"name": "homepage", "value": "ftp://example.com"}]},
     "manifest: annotations: homepage 'ftp://example.com' is not an http or https URL", False),
    ([ROOTFS], {**MANIFEST, "dependencies": [{"imageName": "example.com/base", "size": -1}]},
     "manifest: dependencies[0].size -1 is not a byte count", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "environment": [{"name": "1A", "value": "x"}]}},
     "manifest: app.environment: '1A' is not an environment variable name", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "environment": [{"name": "A", "value": "x"}, {"name": "A", "value": "y"}]}},
     "manifest: app.environment: 'A' given twice", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "environment": {"A": "x"}}},
     "manifest: app.environment is not a list", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "isolators": [{"name": "foo/bar", "value": {}}]}},
     "manifest: app.isolators[0]: 'foo/bar' is not an isolator appc knows", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "isolators": [{"name": "resource/memory", "value": {"limit": "lots"}}]}},
     "manifest: app.isolators[0]: the value of resource/memory is missing or malformed", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "isolators": [{"name": "os/linux/capabilities-retain-set",
                                                            "value": {"set": []}}]}},
     "manifest: app.isolators[0]: the value of os/linux/capabilities-retain-set is missing or malformed", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "isolators": [{"name": "resource/memory"}]}},
     "manifest: app.isolators[0]: the value of resource/memory is missing or malformed", None),  # actool panics
    ([ROOTFS], {**MANIFEST, "app": {**APP, "ports": [{"name": "http", "protocol": "tcp", "port": 70000}]}},
     "manifest: app.ports: 'http': port 1-65535, protocol, count or socketActivated malformed", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "ports": [{"name": "http", "protocol": "tcp", "port": "80"}]}},
     "manifest: app.ports: 'http': port 1-65535, protocol, count or socketActivated malformed", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "mountPoints": [{"name": "data", "path": "/d", "readOnly": "yes"}]}},
     "manifest: app.mountPoints: 'data': path or readOnly malformed", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "eventHandlers": [{"name": "nope", "exec": ["/x"]}]}},
     "manifest: app.eventHandlers: 'nope' is not one of pre-start, post-stop", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "eventHandlers": [{"name": "pre-start", "exec": ["/x"]},
                                                              {"name": "pre-start", "exec": ["/y"]}]}},
     "manifest: app.eventHandlers: 'pre-start' given twice", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "userLabels": {"a": 1}}},
     "manifest: app.userLabels is not an object of strings", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "userAnnotations": [{"name": "a", "value": "b"}]}},
     "manifest: app.userAnnotations is not an object of strings", False),
    ([ROOTFS], {**MANIFEST, "app": {**APP, "ports": [{"name": "http", "protocol": "tcp", "port": 65535, "count": 5}]}},
     "manifest: app.ports: 'http': port 1-65535, protocol, count or socketActivated malformed", False),
    # render refuses a hard link out of rootfs/ (actool lets it through): validate says so
    ([ROOTFS, ("rootfs/h", tarfile.LNKTYPE, "manifest")], MANIFEST,
     "entry 'rootfs/h': hard link to 'manifest', which is not a file of rootfs/", True),
])
def test_each_broken_rule_is_named(tmp_path: Path, entries: list, manifest: dict | None, problem: str,
                                   actool_accepts: bool | None) -> None:
    aci = _aci(tmp_path / "bad.aci", entries, manifest)
    result = _cli("validate", str(aci))
    assert result.returncode == 1
    assert f"  {problem}\n" in result.stdout, result.stdout
    if ACTOOL is not None and actool_accepts is not None:
        verdict = subprocess.run([ACTOOL, "validate", str(aci)], capture_output=True, text=True)
        assert (verdict.returncode == 0) is actool_accepts, verdict.stderr


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "none"])
def test_a_valid_manifest_with_every_field_is_valid(tmp_path: Path, kind: str) -> None:
    """The checks above refuse nothing actool accepts: every field, well formed."""
    manifest = {**MANIFEST, "labels": [*MANIFEST["labels"], {"name": "version", "value": "1.0"}],
                "annotations": [{"name": "created", "value": "2020-01-01T00:00:00.5+02:00"},
                                {"name": "homepage", "value": "https://example.com/"}],
                "dependencies": [{"imageName": "example.com/base", "size": 5,
                                  "labels": [{"name": "os", "value": "linux"}]}],
                "app": {**APP, "environment": [{"name": "A.B-C", "value": "x"}, {"name": "_D"}],
                        "isolators": [{"name": "resource/memory", "value": {"limit": 100, "request": "1Gi"}},
                                      {"name": "resource/cpu", "value": {"limit": "500m"}},
                                      {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_CHOWN"]}},
                                      {"name": "os/linux/no-new-privileges", "value": True},
                                      {"name": "os/linux/oom-score-adj", "value": 5}],
                        "ports": [{"name": "http", "protocol": "tcp", "port": 80, "count": 1,
                                   "socketActivated": False}],
                        "mountPoints": [{"name": "data", "path": "/data", "readOnly": True}],
                        "eventHandlers": [{"name": "pre-start", "exec": ["/x"]}, {"name": "post-stop", "exec": ["/y"]}],
                        "userLabels": {"a": "b"}}}
    aci = _aci(tmp_path / "full.aci", [ROOTFS], manifest)
    raw = gzip.decompress(aci.read_bytes())
    aci.write_bytes({"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress, "none": bytes}[kind](raw))
    result = _cli("validate", "--json", str(aci))
    assert json.loads(result.stdout)["problems"] == [] and result.returncode == 0
    if ACTOOL is not None:
        verdict = subprocess.run([ACTOOL, "validate", str(aci)], capture_output=True, text=True, check=False)
        assert verdict.returncode == 0, verdict.stderr


@pytest.mark.parametrize("url", ["HTTPS://example.com/", "Http://example.com/docs", "http:example.com"])
def test_a_homepage_is_an_http_url_as_go_reads_one(tmp_path: Path, url: str) -> None:
    """actool reads the scheme with Go's url.Parse, which lower-cases it and takes an
    opaque URL: these are valid (validate called them 'not an http or https URL')."""
    aci = _aci(tmp_path / "url.aci", [ROOTFS], {**MANIFEST, "annotations": [{"name": "homepage", "value": url},
                                                                             {"name": "documentation", "value": url}]})
    result = _cli("validate", str(aci))
    assert result.returncode == 0, result.stdout
    if ACTOOL is not None:
        verdict = subprocess.run([ACTOOL, "validate", str(aci)], capture_output=True, text=True, check=False)
        assert verdict.returncode == 0, verdict.stderr


def test_nan_in_the_manifest_is_not_json(tmp_path: Path) -> None:
    """Python's json reads NaN and Infinity; RFC 8259 (and actool) do not, and render would
    write them back into DIR/manifest."""
    aci = tmp_path / "nan.aci"
    data = b'{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/a","x":NaN}'
    with tarfile.open(aci, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        rootfs = tarfile.TarInfo("rootfs")
        rootfs.type = tarfile.DIRTYPE
        tar.addfile(rootfs)
    result = _cli("validate", str(aci))
    assert result.returncode == 1
    assert result.stdout == (f"{aci}: invalid ACI\n  entry 'manifest': manifest is not valid JSON: "
                             "NaN is not JSON (RFC 8259 has no NaN or Infinity)\n")
    render = _cli("render", str(aci), str(tmp_path / "out"))
    assert render.returncode == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("dependencies", [{"imageName": "example.com/base"}, ["example.com/base"], "base"])
def test_inspect_names_malformed_dependencies_without_a_traceback(tmp_path: Path, dependencies: object) -> None:
    aci = _aci(tmp_path / "deps.aci", [ROOTFS], {**MANIFEST, "dependencies": dependencies})
    result = _cli("inspect", str(aci))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "  depends on:" not in result.stdout
    assert "1 layer(s)" in result.stdout
    info = json.loads(_cli("inspect", "--json", str(aci)).stdout)
    assert (info["layers"], info["dependencies"]) == (1, [])


def test_a_truncated_archive_is_invalid(tmp_path: Path, converted: Path) -> None:
    cut = tmp_path / "cut.aci"
    cut.write_bytes(converted.read_bytes()[:5000])
    result = _cli("validate", str(cut), str(converted))
    assert result.returncode == 1
    assert f"{cut}: invalid ACI" in result.stdout and f"{converted}: valid ACI" in result.stdout


def test_a_file_that_is_no_archive_is_named_so(tmp_path: Path) -> None:
    """``validate junk.txt`` (a text file) said "truncated header", and random bytes "bad
    checksum", which read like damage to an archive (new-user review)."""
    text = tmp_path / "notes.aci"
    text.write_text("hello, not an image\n")
    said = "not a tar archive, plain or gzip, bzip2 or xz compressed (truncated header)"
    validated = _cli("validate", str(text))
    assert (validated.returncode, validated.stdout) == (1, f"{text}: invalid ACI\n  reading {text}: {said}\n")
    inspected = _cli("inspect", str(text))
    assert (inspected.returncode, inspected.stderr) == (1, f"Error: {text}: not an ACI: reading {text}: {said}\n")


def test_a_missing_file_is_reported_as_unreadable_only(tmp_path: Path) -> None:
    """Not "...; no manifest entry" on top: whether an unreadable file has a manifest is
    unknown (the newcomer trial found the extra words confusing)."""
    missing = tmp_path / "nonexist.aci"
    result = _cli("inspect", str(missing))
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {missing}: not an ACI: reading {missing}: No such file or directory"
    for command in (["validate", str(missing)], ["render", str(missing), str(tmp_path / "out")]):
        result = _cli(*command)  # Python's "[Errno 2] ...: 'path'" repeated the path
        assert result.returncode == 1 and "[Errno" not in result.stdout + result.stderr
        assert f"reading {missing}: No such file or directory" in result.stdout + result.stderr


@pytest.mark.skipif(ACTOOL is None, reason="actool is not installed (apt-get install appc-spec)")
def test_render_applies_dependencies(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name, files, extra in (("base", {"etc/base": "b", "etc/shared": "base"}, {}),
                               ("app", {"etc/shared": "app"},
                                {"dependencies": [{"imageName": "example.com/base"}]})):
        layout = tmp_path / name
        (layout / "rootfs" / "etc").mkdir(parents=True)
        (layout / "manifest").write_text(json.dumps({**MANIFEST, "name": f"example.com/{name}", **extra}))
        for rel, content in files.items():
            (layout / "rootfs" / rel).write_text(content)
        subprocess.run([ACTOOL, "build", str(layout), str(images / f"{name}.aci")], check=True, capture_output=True)
    result = _cli("render", str(images / "app.aci"), str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "rootfs" / "etc" / "base").read_text() == "b"
    assert (tmp_path / "out" / "rootfs" / "etc" / "shared").read_text() == "app"
    assert json.loads((tmp_path / "out" / "manifest").read_text())["name"] == "example.com/app"
    again = _cli("render", str(images / "app.aci"), str(tmp_path / "out"))
    assert again.returncode == 2 and "not an empty directory" in again.stderr
    info = json.loads(_cli("inspect", "--json", str(images / "app.aci")).stdout)
    assert info["layers"] == 2 and info["dependencies"] == [{"imageName": "example.com/base"}]
