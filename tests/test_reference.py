"""Docker image references (distribution/reference grammar, Docker's normalisation).

Public case 30 (Docker Hub naming) and case 48 (names keep the original reference).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from docker2aci.digest import Digest
from docker2aci.errors import InvalidReference
from docker2aci.reference import ImageRef, split_transport

A64 = "a" * 64
B64 = "b" * 64

VALID = [
    # text, domain, repository, tag, digest hex, api host, str()
    pytest.param("busybox", "docker.io", "library/busybox", "latest", None, "registry-1.docker.io",
                 "docker.io/library/busybox:latest", id="bare-name"),
    pytest.param("docker.io/library/busybox:1", "docker.io", "library/busybox", "1", None,
                 "registry-1.docker.io", "docker.io/library/busybox:1", id="docker-io-full"),
    pytest.param("index.docker.io/x", "docker.io", "library/x", "latest", None, "registry-1.docker.io",
                 "docker.io/library/x:latest", id="index-docker-io-alias"),
    pytest.param("registry-1.docker.io/user/app", "docker.io", "user/app", "latest", None,
                 "registry-1.docker.io", "docker.io/user/app:latest", id="registry-1-alias"),
    pytest.param("user/app", "docker.io", "user/app", "latest", None, "registry-1.docker.io",
                 "docker.io/user/app:latest", id="user-repo-no-library"),
    pytest.param("localhost:5000/foo/bar", "localhost:5000", "foo/bar", "latest", None, "localhost:5000",
                 "localhost:5000/foo/bar:latest", id="localhost-port"),
    pytest.param("localhost/foo", "localhost", "foo", "latest", None, "localhost",
                 "localhost/foo:latest", id="localhost-no-port"),
    pytest.param("gcr.io/x/y:1.0", "gcr.io", "x/y", "1.0", None, "gcr.io", "gcr.io/x/y:1.0", id="gcr"),
    pytest.param("Example.COM/x", "Example.COM", "x", "latest", None, "Example.COM",
                 "Example.COM/x:latest", id="upper-case-host-allowed"),
    pytest.param("[::1]:5000/foo", "[::1]:5000", "foo", "latest", None, "[::1]:5000",
                 "[::1]:5000/foo:latest", id="ipv6-host"),
    pytest.param("foo:5000", "docker.io", "library/foo", "5000", None, "registry-1.docker.io",
                 "docker.io/library/foo:5000", id="colon-without-slash-is-a-tag"),
    pytest.param("g/a.b_c__d-e--f", "docker.io", "g/a.b_c__d-e--f", "latest", None, "registry-1.docker.io",
                 "docker.io/g/a.b_c__d-e--f:latest", id="component-separators"),
    pytest.param(f"alpine@sha256:{A64}", "docker.io", "library/alpine", None, A64, "registry-1.docker.io",
                 f"docker.io/library/alpine@sha256:{A64}", id="digest-only"),
    pytest.param(f"name:tag@sha256:{B64}", "docker.io", "library/name", "tag", B64, "registry-1.docker.io",
                 f"docker.io/library/name:tag@sha256:{B64}", id="tag-and-digest"),
    pytest.param(f"localhost:5000/a/b:v1.0_rc@sha256:{A64}", "localhost:5000", "a/b", "v1.0_rc", A64,
                 "localhost:5000", f"localhost:5000/a/b:v1.0_rc@sha256:{A64}", id="host-port-tag-digest"),
    pytest.param("busybox:" + "t" * 128, "docker.io", "library/busybox", "t" * 128, None,
                 "registry-1.docker.io", "docker.io/library/busybox:" + "t" * 128, id="128-char-tag"),
    # distribution: the name (domain "/" path) may be 255 characters long, not 256
    pytest.param("x/" + "a" * 243, "docker.io", "x/" + "a" * 243, "latest", None, "registry-1.docker.io",
                 "docker.io/x/" + "a" * 243 + ":latest", id="255-char-name"),
    # a Hub host in other letters is another domain, as Docker keeps it, but the same API host
    pytest.param("Docker.IO/user/app", "Docker.IO", "user/app", "latest", None, "registry-1.docker.io",
                 "Docker.IO/user/app:latest", id="hub-host-in-capitals"),
]


@pytest.mark.parametrize("text, domain, repository, tag, digest_hex, api_host, shown", VALID)
def test_parse(text: str, domain: str, repository: str, tag: str | None, digest_hex: str | None,
               api_host: str, shown: str) -> None:
    ref = ImageRef.parse(text)
    assert (ref.domain, ref.repository, ref.tag) == (domain, repository, tag)
    assert ref.digest == (Digest("sha256", digest_hex) if digest_hex else None)
    assert ref.original == text
    assert ref.api_host == api_host
    assert str(ref) == shown


def test_no_default_tag() -> None:
    ref = ImageRef.parse("busybox", default_tag=False)
    assert (ref.repository, ref.tag, ref.digest) == ("library/busybox", None, None)


INVALID = [
    pytest.param("", "empty", id="empty"),
    pytest.param("Busybox", "lowercase", id="upper-case-repository"),
    pytest.param("docker.io/Library/busybox", "lowercase", id="upper-case-path-component"),
    pytest.param("localhost:5000/Team/App:v1", "lowercase", id="48-upper-case-with-host"),
    pytest.param(A64, "64-byte hexadecimal", id="64-hex"),
    pytest.param("busybox:-bad", "tag", id="tag-starts-with-dash"),
    pytest.param("busybox:a/b", "reference format", id="slash-after-colon-not-a-tag"),
    pytest.param("busybox:", "tag", id="empty-tag"),
    pytest.param("busybox:" + "t" * 129, "tag", id="129-char-tag"),
    pytest.param("busybox:bad tag", "tag", id="space-in-tag"),
    pytest.param("alpine@sha256:abc", "digest", id="short-digest"),
    pytest.param(f"alpine@md5:{A64}", "digest", id="unknown-digest-algorithm"),
    pytest.param("a//b", "reference format", id="empty-component"),
    pytest.param("-foo", "reference format", id="leading-dash"),
    pytest.param("foo/", "reference format", id="trailing-slash"),
    pytest.param("foo_-bar", "reference format", id="bad-separator-run"),
    pytest.param("bad_host.io:x/foo", "registry host", id="bad-port"),
    pytest.param("a.b_c/g", "registry host", id="dotted-first-component-is-a-host"),
    # five digits fit the grammar: they failed later, as requests' bare "InvalidURL", or for
    # :0 as four retries of a connection refused (CLI review)
    pytest.param("127.0.0.1:99999/x/y", "127.0.0.1:99999/x/y: invalid reference format: the registry's port 99999 "
                 "is not 1-65535", id="port-above-65535"),
    pytest.param("localhost:0/x", "the registry's port 0 is not 1-65535", id="port-0"),
    pytest.param("[::1]:70000/x", "the registry's port 70000 is not 1-65535", id="ipv6-port-above-65535"),
    pytest.param("a" * 250 + "/" + "b" * 10, "255 characters", id="too-long"),
    pytest.param("x/" + "a" * 244, "255 characters", id="256-char-name"),
]


@pytest.mark.parametrize("text, message", INVALID)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as exc:
        ImageRef.parse(text)
    assert message in str(exc.value)


@pytest.mark.parametrize("text, shown", [
    pytest.param("user:s3cret-pw@registry.example:5000/team/app:1", "***@registry.example:5000/team/app:1",
                 id="user-password-host-repository"),
    pytest.param(f"user:s3cret-pw@registry.example/app@sha256:{A64}", f"***@registry.example/app@sha256:{A64}",
                 id="with-a-digest"),
    pytest.param("user:s3cret-pw@registry.example", "***@registry.example", id="host-only"),
    pytest.param("user@registry.example/app", "***@registry.example/app", id="user-only"),
    pytest.param(f"user:s3cret-pw@registry.example:5000/app@sha256:{A64}",
                 f"***@registry.example:5000/app@sha256:{A64}", id="host-port-and-a-digest"),
    pytest.param("user:s3cret-pw@registry.example:5000", "***@registry.example:5000", id="host-port-only"),
    pytest.param("user:s3cr/et-pw@registry.example/app", "***@registry.example/app", id="password-with-a-slash"),
    pytest.param("user:s3cr/et-pw@registry.example", "***@registry.example", id="password-with-a-slash-host-only"),
    pytest.param("user:s3cr@et-pw@registry.example/app", "***@registry.example/app", id="password-with-an-at"),
    pytest.param(f"user:s3cr@et-pw@registry.example/app@sha256:{A64}", f"***@registry.example/app@sha256:{A64}",
                 id="password-with-an-at-and-a-digest"),
])
def test_credentials_in_a_reference_are_refused_unquoted(text: str, shown: str) -> None:
    """The reference was quoted whole in the error ("invalid digest format"), password and
    all, and so in --json output and batch reports (registry review)."""
    with pytest.raises(InvalidReference) as exc:
        ImageRef.parse(text)
    assert str(exc.value) == (f"{shown}: invalid reference format: a reference cannot hold credentials "
                              "(USER:PASSWORD@); use --creds USER:PASSWORD or docker login")


@pytest.mark.parametrize("name, expected", [
    pytest.param("docker-archive:x.tar", ("docker-archive", "x.tar"), id="docker-archive"),
    pytest.param("oci:dir:tag", ("oci", "dir:tag"), id="oci-with-tag"),
    pytest.param("oci-archive:a:b:c", ("oci-archive", "a:b:c"), id="first-colon-only"),
    pytest.param("x.tar", (None, "x.tar"), id="bare-path"),
    pytest.param("unknown:x", (None, "unknown:x"), id="unknown-transport-is-a-path"),
    pytest.param("./oci:x", (None, "./oci:x"), id="path-with-colon"),
])
def test_split_transport(name: str, expected: tuple[str | None, str]) -> None:
    assert split_transport(name, frozenset({"docker-archive", "oci", "oci-archive"})) == expected


@pytest.mark.parametrize("name, message", [
    pytest.param("oci-archve:{tmp}/x.tar", "oci-archve:{tmp}/x.tar: no such file or directory ('oci-archve' is not a "
                 "transport: docker, docker-archive, docker-daemon, oci, oci-archive; did you mean oci-archive:?)",
                 id="misspelled"),
    pytest.param("zzz:{tmp}/x.tar", "zzz:{tmp}/x.tar: no such file or directory ('zzz' is not a transport: docker, "
                 "docker-archive, docker-daemon, oci, oci-archive)", id="unknown"),
    pytest.param("{tmp}/y.tar", "{tmp}/y.tar: no such file or directory", id="bare-path"),
    pytest.param("OCI:{tmp}/x.tar", "OCI:{tmp}/x.tar: no such file or directory ('OCI' is not a transport: docker, "
                 "docker-archive, docker-daemon, oci, oci-archive; did you mean oci:?)", id="upper-case"),
    pytest.param("busybox:latest", "busybox:latest: no such file or directory ('busybox' is not a transport: docker, "
                 "docker-archive, docker-daemon, oci, oci-archive; for a registry image: docker://busybox:latest)",
                 id="image-name"),
    pytest.param("localhost:5000/app", "localhost:5000/app: no such file or directory ('localhost' is not a transport: "
                 "docker, docker-archive, docker-daemon, oci, oci-archive; for a registry image: "
                 "docker://localhost:5000/app)", id="host-port"),
    pytest.param("https://example.com/app", "https://example.com/app: no such file or directory ('https' is not a "
                 "transport: docker, docker-archive, docker-daemon, oci, oci-archive; for a registry image: "
                 "docker://example.com/app)", id="url"),
])
def test_a_missing_path_that_looks_like_a_transport_says_so(tmp_path: Path, name: str, message: str) -> None:
    """A misspelled transport reads as a path; when that path does not exist, the error
    also says the prefix is not a transport (the newcomer trial took it for a missing file)."""
    from docker2aci.errors import SourceError
    from docker2aci.sources import open_source

    (tmp_path / "x.tar").write_bytes(b"")  # the file the user meant exists
    with pytest.raises(SourceError) as exc:
        open_source(name.format(tmp=tmp_path))
    assert str(exc.value) == message.format(tmp=tmp_path)


@pytest.mark.parametrize("name, hint", [
    pytest.param("busybox", " (for a registry image: docker://busybox)", id="docker-pull-name"),
    pytest.param("library/busybox", " (for a registry image: docker://library/busybox)", id="hub-repository"),
    pytest.param("quay.io/coreos/etcd:v3.5.0", " (for a registry image: docker://quay.io/coreos/etcd:v3.5.0)",
                 id="dotted-host"),
    pytest.param("127.0.0.1:5000/app:1", " (for a registry image: docker://127.0.0.1:5000/app:1)", id="ip-host"),
    pytest.param("app.tar", "", id="archive-name"),
    pytest.param("app.aci", "", id="aci-name"),
    pytest.param("./busybox", "", id="relative-path"),
    pytest.param("Busy Box", "", id="no-reference"),
])
def test_a_missing_path_that_reads_as_a_registry_reference_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     name: str, hint: str) -> None:
    """``docker2aci quay.io/coreos/etcd:v3.5.0`` and ``docker2aci busybox`` (as ``docker pull``
    takes them) said only "no such file or directory", where ``busybox:latest`` got the
    ``docker://`` hint (new-user review)."""
    from docker2aci.errors import SourceError
    from docker2aci.sources import open_source

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError) as exc:
        open_source(name)
    assert str(exc.value) == f"{name}: no such file or directory{hint}"


@pytest.mark.parametrize("name, reason", [
    ("loop", "too many levels of symbolic links"),
    ("docker-archive:loop", "too many levels of symbolic links"),
    ("oci:loop:latest", "too many levels of symbolic links"),
    ("file/app.tar", "not a directory"),
])
def test_a_path_that_cannot_be_reached_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                name: str, reason: str) -> None:
    """A link loop was "no such file or directory" (``os.path.exists`` is false for it),
    though the name is there (review)."""
    from docker2aci.errors import SourceError
    from docker2aci.sources import open_source

    monkeypatch.chdir(tmp_path)
    os.symlink("loop", "loop")
    Path("file").write_text("")
    with pytest.raises(SourceError) as exc:
        open_source(name)
    assert str(exc.value) == f"{name}: {reason}"


@pytest.mark.parametrize("name", ["", " ", "\t"])
def test_an_empty_source_is_a_usage_error(name: str) -> None:
    """It said "no such file or directory" with exit status 1 (a new user's find)."""
    done = subprocess.run([sys.executable, "-m", "docker2aci", name], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert done.stderr.splitlines()[0] == ("Error: the image source is empty: give a path, or TRANSPORT:NAME "
                                           "(docker://NAME, oci:DIR, ...)")


def test_a_file_that_is_no_image_archive_says_so(tmp_path: Path) -> None:
    """A bare path to some other file said "unknown layer encoding" (a new user's find)."""
    from docker2aci.errors import SourceError
    from docker2aci.sources import open_source

    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/sh\n")
    for name in (str(text), f"docker-archive:{text}", f"oci-archive:{text}"):
        with pytest.raises(SourceError) as exc:
            open_source(name)
        assert str(exc.value) == (f"{name}: not an image archive (a docker save or OCI archive): neither a tar nor a "
                                  "gzip, zstd, bzip2 or xz compressed one")


@pytest.mark.parametrize("docker_host", [None, "unix:///nonexistent/docker.sock"])
def test_an_engine_out_of_reach_is_named(docker_host: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """It said only "Error while fetching server API version: ('Connection aborted.', ...)"
    (a new user's find): the error names the socket tried, and DOCKER_HOST."""
    from docker2aci.errors import SourceError
    from docker2aci.sources import open_source

    if docker_host is None:
        if os.path.exists("/var/run/docker.sock"):
            pytest.skip("an engine socket is at the default path")
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        where = "at unix:///var/run/docker.sock (the default: DOCKER_HOST is not set)"
    else:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
        where = f"at {docker_host} (DOCKER_HOST)"
    expected = f"docker-daemon:busybox: cannot reach the Docker Engine {where}: "
    with pytest.raises(SourceError, match=re.escape(expected)):
        open_source("docker-daemon:busybox")


@pytest.mark.parametrize("text, message", [
    pytest.param("busybox:1.36@sha256:abcd", "busybox:1.36@sha256:abcd: invalid digest format",
                 id="short-digest-after-a-tag: a typo, not credentials"),
    pytest.param("busybox@latest", "busybox@latest: invalid digest format", id="tag-given-as-a-digest"),
    pytest.param("localhost:5000/app:1@latest", "localhost:5000/app:1@latest: invalid digest format",
                 id="host-port-and-a-bad-digest: a reference, not credentials"),
])
def test_a_malformed_digest_is_not_taken_for_credentials(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as exc:
        ImageRef.parse(text)
    assert str(exc.value) == message


@pytest.mark.parametrize("source, shown", [
    pytest.param("docker://user:s3cr/et-pw@registry.example/app", "docker://***@registry.example/app",
                 id="docker-url-password-with-a-slash"),
    pytest.param("https://user:s3cr@et-pw@registry.example/app", "https://***@registry.example/app",
                 id="url-password-with-an-at"),
    pytest.param("user:s3cret-pw@registry.example/app", "***@registry.example/app", id="bare-reference"),
    pytest.param(f"docker://registry.example:5000/app@sha256:{A64}", f"docker://registry.example:5000/app@sha256:{A64}",
                 id="digest-reference-kept"),
    pytest.param("/srv/images/app@2/img.tar", "/srv/images/app@2/img.tar", id="path-with-an-at-kept"),
])
def test_a_source_is_shown_without_its_password(source: str, shown: str) -> None:
    """A batch report's ``source`` and the error for a missing file (registry review's
    finding, for passwords holding ``/`` or ``@``)."""
    from docker2aci.errors import SourceError
    from docker2aci.jobs import JobResult
    from docker2aci.sources import open_source, redact_source

    assert redact_source(source) == shown
    assert JobResult(source, "failed", None).source == shown
    if "s3cr" in source and not source.startswith("docker://"):
        with pytest.raises(SourceError) as exc:
            open_source(source)
        assert "s3cr" not in str(exc.value) and "et-pw" not in str(exc.value)


def test_mirror_does_not_quote_a_target_with_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    """mirror quoted its target ahead of the parse error: the password again (registry review)."""
    from docker2aci.cli import main

    assert main(["mirror", "user:s3cret-pw@registry.example/app"]) == 2
    assert capsys.readouterr().err == ("Error: ***@registry.example/app: invalid reference format: a reference cannot "
                                       "hold credentials (USER:PASSWORD@); use --creds USER:PASSWORD or docker login\n")
