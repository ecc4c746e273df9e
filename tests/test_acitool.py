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
import os
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


def _aci(path: Path, entries: list[tuple[str, bytes, str]], manifest: dict | bytes | None = MANIFEST) -> Path:
    """A gzip ACI: ``manifest`` (unless None; bytes as they are) then ``(name, type,
    data-or-linkname)`` entries."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        if manifest is not None:
            data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
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


def _app(**fields: object) -> dict:
    return {**MANIFEST, "app": {**APP, **fields}}


def _isolators(*items: tuple[str, object]) -> dict:
    return _app(isolators=[{"name": name, "value": value} for name, value in items])


def _homepage(url: str) -> dict:
    return {**MANIFEST, "annotations": [{"name": "homepage", "value": url}]}


_M = json.dumps(MANIFEST).encode()
_SELINUX = {"user": "system_u", "role": "system_r", "type": "app_t", "level": "s0"}


# One case per rule of appc's schema (spec/aci.md, spec/types.md, spec/ace.md "Isolators") and
# of the archive's layout: (entries, manifest, the problem validate names or None for a valid
# ACI, whether actool 0.8.11 gives the same verdict). Where it does not, the comment says why
# validate follows the spec and actool does not.
AGREEMENT_CASES = [
    # AC names and AC versions (spec/types.md)
    pytest.param([ROOTFS], {**MANIFEST, "name": "sub-domain.example.com/user/app_v1.2"}, None, True, id="name"),
    # the spec's regular expression has no two separators in a row; actool checks the characters and the ends only
    pytest.param([ROOTFS], {**MANIFEST, "name": "example.com//app"},
                 "manifest: name 'example.com//app' is not an AC identifier", False, id="name-double-separator"),
    pytest.param([ROOTFS], {**MANIFEST, "acVersion": "0.0.0"},
                 "manifest: acVersion '0.0.0' is not a semantic version above 0.0.0", True, id="version-zero"),
    pytest.param([ROOTFS], {**MANIFEST, "acVersion": "0.0.0-rc.1"}, None, True, id="version-zero-pre-release"),
    pytest.param([ROOTFS], {**MANIFEST, "acVersion": "1.2.3-a..b"},
                 "manifest: acVersion '1.2.3-a..b' is not a semantic version above 0.0.0", True,
                 id="version-empty-pre-release-identifier"),
    pytest.param([ROOTFS], {**MANIFEST, "acVersion": "9223372036854775808.0.0"},
                 "manifest: acVersion '9223372036854775808.0.0' is not a semantic version above 0.0.0", True,
                 id="version-past-int64"),
    # past Python's int() digit limit (4300): validate and render ended in a traceback
    pytest.param([ROOTFS], {**MANIFEST, "acVersion": f"1{'0' * 4400}.0.0"},
                 f"manifest: acVersion '1{'0' * 4400}.0.0' is not a semantic version above 0.0.0", True,
                 id="version-past-int-digit-limit"),
    # SemVer 2.0.0 (item 10): build identifiers MUST NOT be empty; go-semver takes an empty build
    pytest.param([ROOTFS], {**MANIFEST, "acVersion": "1.2.3+"},
                 "manifest: acVersion '1.2.3+' is not a semantic version above 0.0.0", False, id="version-empty-build"),
    # labels (spec/aci.md): names are AC identifiers, os/arch pairs from appc's table
    pytest.param([ROOTFS], {**MANIFEST, "labels": [*MANIFEST["labels"], {"name": "example.com/channel",
                                                                         "value": "beta"}]},
                 None, True, id="label-name-ac-identifier"),
    pytest.param([ROOTFS], {**MANIFEST, "labels": [{"name": "os", "value": "darwin"},
                                                   {"name": "arch", "value": "x86_64"}]}, None, True,
                 id="os-arch-darwin"),
    pytest.param([ROOTFS], {**MANIFEST, "labels": [{"name": "os", "value": "freebsd"},
                                                   {"name": "arch", "value": "aarch64"}]},
                 "manifest: labels: arch 'aarch64' is not one of amd64, i386, arm (os freebsd)", True,
                 id="os-arch-not-in-the-table"),
    # JSON names are case-sensitive: "Labels" is no field of the schema (which lets unknown fields
    # through); Go's encoding/json reads it as labels
    pytest.param([ROOTFS], {**MANIFEST, "Labels": [{"name": "os", "value": "plan9"}]}, None, False,
                 id="field-name-in-another-case"),
    # annotations (spec/aci.md): homepage and documentation are http or https URLs (RFC 3986)
    pytest.param([ROOTFS], _homepage("https://example.com/a b?q=%41#top"), None, True, id="homepage"),
    pytest.param([ROOTFS], _homepage("https://exa mple.com/"),
                 "manifest: annotations: homepage 'https://exa mple.com/' is not an http or https URL", True,
                 id="homepage-space-in-host"),
    pytest.param([ROOTFS], _homepage("https://example.com/%zz"),
                 "manifest: annotations: homepage 'https://example.com/%zz' is not an http or https URL", True,
                 id="homepage-bad-escape"),
    pytest.param([ROOTFS], _homepage("https://example.com:https/"),
                 "manifest: annotations: homepage 'https://example.com:https/' is not an http or https URL", True,
                 id="homepage-port-not-a-number"),
    pytest.param([ROOTFS], _homepage("https://example.com/\x7f"),
                 "manifest: annotations: homepage 'https://example.com/\\x7f' is not an http or https URL", True,
                 id="homepage-control-character"),
    # RFC 3986 (3.2.2) has no "<" in a host; Go's url.Parse lets it through
    pytest.param([ROOTFS], _homepage("https://a<b/"),
                 "manifest: annotations: homepage 'https://a<b/' is not an http or https URL", False,
                 id="homepage-angle-bracket-in-host"),
    # RFC 3986 (3.2.2): a host name may be percent-encoded; Go refuses escapes of ASCII in hosts
    pytest.param([ROOTFS], _homepage("https://%65xample.com/"), None, False, id="homepage-percent-encoded-host"),
    # RFC 3339 (5.6): an offset's hours are 00-23; Go's time.Parse takes +24:00
    pytest.param([ROOTFS], {**MANIFEST, "annotations": [{"name": "created", "value": "2020-01-01T00:00:00+24:00"}]},
                 "manifest: annotations: created '2020-01-01T00:00:00+24:00' is not an RFC 3339 date", False,
                 id="created-offset-24-hours"),
    # isolators (spec/ace.md): values, ranges, defaults, counts
    pytest.param([ROOTFS], _isolators(("resource/memory", {"limit": "1.5Gi", "request": "1e9"}),
                                      ("resource/cpu", {"limit": 2}),
                                      ("resource/block-iops", {"default": True, "limit": "1k"}),
                                      ("os/linux/seccomp-remove-set", {"set": ["reboot"], "errno": "ENOTSUP"}),
                                      ("os/linux/selinux-context", _SELINUX),
                                      ("os/linux/capabilities-retain-set", {"set": ["CAP_CHOWN"]}),
                                      ("os/linux/capabilities-retain-set", {"set": ["CAP_KILL"]}),
                                      ("os/linux/cpu-shares", 262144),
                                      ("os/unix/sysctl", {"net.ipv4.ip_forward": "0"})),
                 None, True, id="isolators"),
    pytest.param([ROOTFS], _isolators(("resource/memory", {"limit": "1kk"})),
                 "manifest: app.isolators[0]: the value of resource/memory is missing or malformed", True,
                 id="quantity-unknown-suffix"),
    pytest.param([ROOTFS], _isolators(("resource/memory", {"limit": "1.2.3"})),
                 "manifest: app.isolators[0]: the value of resource/memory is missing or malformed", True,
                 id="quantity-two-points"),
    # spec/ace.md lists K among the metric suffixes; Kubernetes' parser in actool knows only k
    pytest.param([ROOTFS], _isolators(("resource/memory", {"limit": "512K"})), None, False, id="quantity-capital-k"),
    # no number: the quantity format (Kubernetes', quoted by actool's own message) needs a digit or '.'
    pytest.param([ROOTFS], _isolators(("resource/memory", {"limit": "k"})),
                 "manifest: app.isolators[0]: the value of resource/memory is missing or malformed", False,
                 id="quantity-without-number"),
    pytest.param([ROOTFS], _isolators(("resource/cpu", {"default": True, "limit": "1"})),
                 "manifest: app.isolators[0]: resource/cpu: default must be false", True, id="cpu-default"),
    pytest.param([ROOTFS], _isolators(("resource/block-bandwidth", {"limit": "1M"})),
                 "manifest: app.isolators[0]: resource/block-bandwidth: default must be true", True,
                 id="block-bandwidth-without-default"),
    pytest.param([ROOTFS], _isolators(("resource/network-bandwidth", {"default": True, "request": "1", "limit": "1"})),
                 "manifest: app.isolators[0]: resource/network-bandwidth: takes a limit, not a request", True,
                 id="network-bandwidth-request"),
    pytest.param([ROOTFS], _isolators(("os/linux/oom-score-adj", 1001)),
                 "manifest: app.isolators[0]: os/linux/oom-score-adj: 1001 is not between -1000 and 1000", True,
                 id="oom-score-adj-range"),
    pytest.param([ROOTFS], _isolators(("os/linux/cpu-shares", 1)),
                 "manifest: app.isolators[0]: os/linux/cpu-shares: 1 is not between 2 and 262144", True,
                 id="cpu-shares-range"),
    pytest.param([ROOTFS], _isolators(("os/linux/seccomp-retain-set", {"set": ["read"], "errno": "enosys"})),
                 "manifest: app.isolators[0]: os/linux/seccomp-retain-set: errno 'enosys' is not an errno name "
                 "(ENOSYS, EPERM ...)", True, id="seccomp-errno"),
    pytest.param([ROOTFS], _isolators(("os/linux/seccomp-retain-set", {"set": ["read"]}),
                                      ("os/linux/seccomp-remove-set", {"set": ["reboot"]})),
                 "manifest: app.isolators[1]: os/linux/seccomp-remove-set cannot be given with "
                 "os/linux/seccomp-retain-set", True, id="seccomp-retain-and-remove"),
    pytest.param([ROOTFS], _isolators(("os/linux/oom-score-adj", 1), ("os/linux/oom-score-adj", 2)),
                 "manifest: app.isolators[1]: os/linux/oom-score-adj given twice (once per app)", True,
                 id="oom-score-adj-twice"),
    pytest.param([ROOTFS], _isolators(("os/linux/selinux-context", {**_SELINUX, "level": ""})),
                 "manifest: app.isolators[0]: os/linux/selinux-context: level '' is empty", True,
                 id="selinux-context-without-level"),
    pytest.param([ROOTFS], _isolators(("os/linux/selinux-context", {**_SELINUX, "user": "a:b"})),
                 "manifest: app.isolators[0]: os/linux/selinux-context: user 'a:b' is empty or holds ':'", True,
                 id="selinux-context-colon"),
    pytest.param([ROOTFS], _isolators(("os/unix/sysctl", {"net.ipv4.ip_forward": 0})),
                 "manifest: app.isolators[0]: the value of os/unix/sysctl is missing or malformed", True,
                 id="sysctl-value-not-a-string"),
    # the app: environment names, event handlers, mount points, ports, supplementary groups
    pytest.param([ROOTFS], _app(environment=[{"name": "A.B-C_1", "value": "x"}]), None, True, id="environment"),
    pytest.param([ROOTFS], _app(environment=[{"name": "A=B", "value": "x"}]),
                 "manifest: app.environment: 'A=B' is not an environment variable name", True,
                 id="environment-name"),
    pytest.param([ROOTFS], _app(eventHandlers={}), "manifest: app.eventHandlers is not a list", True,
                 id="event-handlers-object"),
    pytest.param([ROOTFS], _app(eventHandlers=[{"name": "pre-start", "exec": "/bin/true"}]),
                 "manifest: app.eventHandlers: pre-start: exec is not a list of strings", True,
                 id="event-handler-exec-string"),
    pytest.param([ROOTFS], _app(mountPoints={}), "manifest: app.mountPoints is not a list", True,
                 id="mount-points-object"),
    # the name is the key a pod's volume is given by (spec/pods.md): two mount points cannot share it
    pytest.param([ROOTFS], _app(mountPoints=[{"name": "data", "path": "/a"}, {"name": "data", "path": "/b"}]),
                 "manifest: app.mountPoints: a name is given twice", False, id="mount-point-name-twice"),
    pytest.param([ROOTFS], _app(ports=[{"name": "dns", "protocol": "udp", "port": 53, "count": 65483}]), None, True,
                 id="port-range-to-65535"),
    pytest.param([ROOTFS], _app(ports=[{"name": "dns", "protocol": "udp", "port": 0}]),
                 "manifest: app.ports: 'dns': port 1-65535, protocol, count or socketActivated malformed", True,
                 id="port-zero"),
    pytest.param([ROOTFS], _app(supplementaryGIDs=[10, "20"]), "manifest: app.supplementaryGIDs is not a list of "
                 "integers", True, id="supplementary-gids"),
    # dependencies and the path whitelist
    pytest.param([ROOTFS], {**MANIFEST, "dependencies": [{"imageName": "example.com/base", "labels": [
        {"name": "example.com/channel", "value": "beta"}]}]}, None, True, id="dependency-label-ac-identifier"),
    pytest.param([ROOTFS], {**MANIFEST, "dependencies": {}}, "manifest: dependencies is not a list", True,
                 id="dependencies-object"),
    pytest.param([ROOTFS], {**MANIFEST, "dependencies": [{"imageName": "example.com/base", "size": 2**64}]},
                 "manifest: dependencies[0].size 18446744073709551616 is not a byte count", True,
                 id="dependency-size-past-uint64"),
    # spec/types.md: an image ID's value is the hex encoded digest; actool takes any text after "sha512-"
    pytest.param([ROOTFS], {**MANIFEST, "dependencies": [{"imageName": "example.com/base", "imageID": "sha512-xyz"}]},
                 "manifest: dependencies[0].imageID 'sha512-xyz' is not sha512-<hex>", False, id="dependency-image-id"),
    pytest.param([ROOTFS], {**MANIFEST, "pathWhitelist": ""}, "manifest: pathWhitelist is not a list", True,
                 id="path-whitelist-string"),
    # the manifest's JSON: UTF-8 (RFC 8259, section 8.1), each key once
    pytest.param([ROOTFS], b"\xef\xbb\xbf" + _M,
                 "entry 'manifest': manifest is not valid JSON: it starts with a byte order mark (U+FEFF), which "
                 "JSON text does not have (RFC 8259, section 8.1)", True, id="byte-order-mark"),
    pytest.param([ROOTFS], json.dumps(MANIFEST).encode("utf-16"),
                 "entry 'manifest': manifest is not valid JSON: not UTF-8 text (byte 0)", True, id="utf-16"),
    # Go replaces bytes that are not UTF-8 by U+FFFD; RFC 8259 (8.1) requires UTF-8
    pytest.param([ROOTFS], _M[:-1] + b',"annotations":[{"name":"a","value":"\xff"}]}',
                 "entry 'manifest': manifest is not valid JSON: not UTF-8 text (byte 196)", False, id="not-utf-8"),
    pytest.param([ROOTFS], _M[:-1] + b',"name":"Example.com/Test","name":"example.com/test"}',
                 "entry 'manifest': key 'name' given twice in one object", True, id="key-twice-first-invalid"),
    # readers differ on which of two keys counts (Go and Python take the last, others the first):
    # the same manifest would be another image for them; actool checks each and takes the last
    pytest.param([ROOTFS], _M[:-1] + b',"name":"example.com/other"}',
                 "entry 'manifest': key 'name' given twice in one object", False, id="key-twice-both-valid"),
    # one line per object that gave it twice: 70 000 lines for a 1 MB manifest
    pytest.param([ROOTFS], _M[:-1] + b',"x":[' + b",".join([b'{"a":1,"a":2}'] * 1000) + b"]}",
                 "entry 'manifest': key 'a' given twice in one object", False, id="key-twice-in-many-objects"),
    # the archive's layout (spec/aci.md, "Image Archives")
    pytest.param([("rootfs/a", tarfile.REGTYPE, "x")], MANIFEST, "no 'rootfs' directory entry", True,
                 id="rootfs-only-implied"),
    pytest.param([], MANIFEST, "no 'rootfs' directory entry", True, id="no-rootfs"),
    pytest.param([("rootfs", tarfile.REGTYPE, "x")], MANIFEST, "entry 'rootfs': not a directory", True,
                 id="rootfs-a-file"),
    pytest.param([("./", tarfile.DIRTYPE, ""), ("./rootfs/", tarfile.DIRTYPE, ""),
                  ("./rootfs/a", tarfile.REGTYPE, "x")], MANIFEST, None, True,
                 id="archive-root-entry"),  # what `tar -C layout -cf image.aci .` writes
    # "only two top-level pathnames": actool takes any name that starts with the text "rootfs"
    pytest.param([ROOTFS, ("rootfs.old/a", tarfile.REGTYPE, "x")], MANIFEST,
                 "entry 'rootfs.old/a': only 'manifest' and 'rootfs/' may be at the top", False, id="rootfs-prefix"),
    # "no duplicate entries": actool leaves the rootfs entry out of its count
    pytest.param([ROOTFS, ("rootfs/", tarfile.DIRTYPE, "")], MANIFEST, "entry 'rootfs': given twice", False,
                 id="rootfs-twice"),
]


@pytest.mark.parametrize(("entries", "manifest", "problem", "actool_agrees"), AGREEMENT_CASES)
def test_validate_agrees_with_actool(tmp_path: Path, entries: list, manifest: dict | bytes, problem: str | None,
                                     actool_agrees: bool) -> None:
    """validate's verdict on each rule beside actool's (the oracle), and the problem it names."""
    from runner.acitool import validate_aci

    aci = _aci(tmp_path / "case.aci", entries, manifest)
    report = validate_aci(aci)
    assert report.problems == ([] if problem is None else [problem])
    if ACTOOL is not None:
        verdict = subprocess.run([ACTOOL, "validate", str(aci)], capture_output=True, text=True, errors="replace",
                                 check=False)
        assert (verdict.returncode == 0) is (report.valid is actool_agrees), verdict.stderr


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


def test_render_refuses_an_aci_without_rootfs(tmp_path: Path) -> None:
    """A manifest alone is no image (spec/aci.md, "Image Archives": a manifest and a rootfs
    directory; actool refuses it): render wrote an empty rootfs and exited 0. Entries under
    rootfs/ without the directory's own entry still render, as rkt renders them (validate
    names the missing entry, as actool does)."""
    bare = _aci(tmp_path / "bare.aci", [])
    result = _cli("render", str(bare), str(tmp_path / "out"))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"Error: rendering {bare}: no 'rootfs' directory: not an ACI\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bare.aci"]  # neither DIR nor a work directory is left
    if ACTOOL is not None:
        verdict = subprocess.run([ACTOOL, "validate", str(bare)], capture_output=True, text=True, check=False)
        assert verdict.returncode == 1 and "no rootfs found in layout" in verdict.stderr
    implied = _aci(tmp_path / "implied.aci", [("rootfs/a", tarfile.REGTYPE, "x")])
    result = _cli("render", str(implied), str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "rootfs" / "a").read_text() == "x"


def test_render_refuses_an_ac_version_too_large_without_a_traceback(tmp_path: Path) -> None:
    """An acVersion number of more digits than ``int()`` converts (4300) ended render with a
    traceback (review of the AC version check); it is refused as any other bad version."""
    version = f"{'9' * 5000}.0.0"
    aci = _aci(tmp_path / "huge.aci", [ROOTFS], {**MANIFEST, "acVersion": version})
    result = _cli("render", str(aci), str(tmp_path / "out"))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"Error: {aci}: not a valid image manifest: acVersion '{version}' is not a semantic "
                             "version above 0.0.0\n")


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


@pytest.mark.parametrize("compress", [bytes, gzip.compress])
def test_an_archive_cut_inside_a_header_is_truncated(tmp_path: Path, converted: Path, compress) -> None:
    """An uncompressed ACI cut in the middle of its last header (a copy that stopped early)
    was a valid ACI with another image ID: tarfile takes a partial header for the end of
    the archive. actool says "unexpected EOF" (CLI review)."""
    tar = gzip.decompress(converted.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        last = archive.getmembers()[-1].offset
    cut = tmp_path / "cut.aci"
    cut.write_bytes(compress(tar[:last + 100]))
    said = (f"reading {cut}: truncated, or with data after its end: the tar ends 100 bytes into a 512-byte block, "
            f"not zeros (after {last + 100} bytes)")
    validated = _cli("validate", str(cut))
    assert (validated.returncode, validated.stdout) == (1, f"{cut}: invalid ACI\n  {said}\n")
    inspected = _cli("inspect", str(cut))
    assert (inspected.returncode, inspected.stderr) == (1, f"Error: {cut}: not an ACI: {said}\n")
    rendered = _cli("render", str(cut), str(tmp_path / "out"))
    assert rendered.returncode == 1 and said in rendered.stderr and not (tmp_path / "out").exists()
    if ACTOOL is not None:
        assert subprocess.run([ACTOOL, "validate", str(cut)], capture_output=True).returncode == 1
    padded = tmp_path / "padded.aci"  # zeros after the end-of-archive blocks are padding, for actool too
    padded.write_bytes(compress(tar + bytes(100)))
    assert _cli("validate", str(padded)).stdout.startswith(f"{padded}: valid ACI, image ID sha512-")
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.getmembers()
        end = archive.offset  # the first end-of-archive block
    half_end = tmp_path / "half-end.aci"  # cut inside the first of the two end blocks: Go's "unexpected EOF"
    half_end.write_bytes(compress(tar[:end + 100]))
    assert _cli("validate", str(half_end)).returncode == 1
    if ACTOOL is not None:
        assert subprocess.run([ACTOOL, "validate", str(half_end)], capture_output=True).returncode == 1


@pytest.mark.parametrize("compress", [bytes, gzip.compress])
@pytest.mark.parametrize("damage", ["header", "lone zero block"])
def test_an_archive_damaged_in_the_middle_is_invalid(tmp_path: Path, converted: Path, compress, damage: str) -> None:
    """A malformed header in the middle of an ACI (one bit flipped), or a single zero
    block there, ended tarfile's listing quietly: validate said valid (another image ID) and
    render wrote the entries before it only, status 0. Go's archive/tar, which rkt and
    actool read ACIs with, says "invalid tar header". The header damaged is the one after
    the largest file (busybox, about 1 MB), so the reader has gone far past it in 10 KiB
    reads before it looks back."""
    tar = gzip.decompress(converted.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = archive.getmembers()
    largest = max(range(len(members)), key=lambda i: members[i].size)
    before, after = members[largest], members[largest + 1]
    assert before.size > 500_000 and after.offset > 2 * (64 << 10)
    broken = bytearray(tar)
    if damage == "header":
        broken[after.offset + 3] ^= 0x20  # a name's byte: the checksum no longer matches
        said = f"a malformed tar header at byte {after.offset} of the tar"
    else:
        broken[after.offset:after.offset + 512] = bytes(512)
        said = f"data after a single end-of-archive block at byte {after.offset} of the tar"
    said += f", after entry {before.name!r}: the ACI is damaged (the entries after it cannot be read)"
    aci = tmp_path / "damaged.aci"
    aci.write_bytes(compress(bytes(broken)))
    validated = _cli("validate", str(aci))
    assert (validated.returncode, validated.stdout) == (1, f"{aci}: invalid ACI\n  reading {aci}: {said}\n")
    inspected = _cli("inspect", str(aci))
    assert (inspected.returncode, inspected.stderr) == (1, f"Error: {aci}: not an ACI: reading {aci}: {said}\n")
    rendered = _cli("render", str(aci), str(tmp_path / "out"))
    assert (rendered.returncode, rendered.stderr) == (1, f"Error: rendering {aci}: {said}\n")
    assert not (tmp_path / "out").exists()
    if ACTOOL is not None:
        verdict = subprocess.run([ACTOOL, "validate", str(aci)], capture_output=True, text=True)
        assert verdict.returncode == 1 and "invalid tar header" in verdict.stderr


@pytest.mark.parametrize("name, what, transport", [
    ("docker-save-dockerd.tar", "a docker save archive", "docker-archive"),  # written by dockerd
    ("oci-archive.tar", "an OCI image archive", "oci-archive"),  # written by skopeo
])
def test_an_image_archive_is_named_with_how_to_convert_it(name: str, what: str, transport: str) -> None:
    """``validate save.tar`` listed every entry at the top as "only 'manifest' and
    'rootfs/' may be at the top" (some twenty lines) and never said what the file was
    (new-user trial): one line says it, and how to convert it."""
    archive = ARCHIVE.parent / name
    if not archive.exists():
        pytest.skip(f"{archive} not found")
    said = f"{what} (no 'manifest' entry): convert it first, docker2aci {transport}:{archive}"
    validated = _cli("validate", str(archive))
    assert (validated.returncode, validated.stdout) == (1, f"{archive}: invalid ACI\n  {said}\n")
    inspected = _cli("inspect", str(archive))
    assert (inspected.returncode, inspected.stderr) == (1, f"Error: {archive}: not an ACI: {said}\n")


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


def test_a_fifo_or_a_directory_is_not_read(tmp_path: Path) -> None:
    """``validate`` and ``inspect`` of a FIFO waited for ever on its writer (review); a
    directory was "reading DIR: Is a directory"."""
    fifo = tmp_path / "fifo.aci"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        validated = _cli("validate", str(path))
        assert (validated.returncode, validated.stdout) == (1, f"{path}: invalid ACI\n  not a regular file\n")
        inspected = _cli("inspect", str(path))
        assert (inspected.returncode, inspected.stderr) == (1, f"Error: {path}: not a regular file\n")


def test_a_missing_file_is_reported_as_unreadable_only(tmp_path: Path) -> None:
    """Not "...; no manifest entry" on top: whether an unreadable file has a manifest is
    unknown (the newcomer trial found the extra words confusing)."""
    missing = tmp_path / "nonexist.aci"
    result = _cli("inspect", str(missing))
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {missing}: No such file or directory"  # not "not an ACI" (trial)
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
