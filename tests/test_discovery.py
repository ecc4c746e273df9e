"""appc discovery (docker2aci.discovery, docker2aci.cli_discovery): the tree a mirror lays out,
served by a real static web server (Python's http.server, on port 80 and, for
--trust-keys-from-https, with TLS on port 443), read by ``docker2aci discover``.

Images are converted by the real pipeline from ../shared/images/oci-archive.tar with an
AC name under each test's own prefix (``ConvertOptions.ac_name``/``output_name``) and
signed by it; one server serves every test's tree, each under ``127.0.0.1/<test name>``.
"""

from __future__ import annotations

import datetime
import functools
import gzip
import hashlib
import html.parser
import io
import ipaddress
import json
import os
import posixpath
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest
import requests
from services import QuietHTTPServer, die_with_pytest

from docker2aci import cli, discovery, signing
from docker2aci.discovery import (
    DiscoveryEntry,
    MetaTag,
    aci_relpath,
    parse_meta_tags,
    write_pages,
)
from docker2aci.errors import OutputError, SigningError, UsageError, VerificationError
from docker2aci.manifest import Platform
from docker2aci.pipeline import ConvertOptions, convert
from docker2aci.registry.retry import RetryPolicy
from docker2aci.trust import TrustStore

REPO = Path(__file__).resolve().parents[1]
OCI_ARCHIVE = REPO.parent / "shared" / "images" / "oci-archive.tar"
HOST = "127.0.0.1"
# Runs `docker2aci discover`; registers the command first when cli.py does not list it yet.
RUNNER = """import sys
from docker2aci import cli
if "discover" not in cli._COMMANDS:
    cli._COMMANDS["discover"] = cli._lazy_command("cli_discovery", "discover")
sys.exit(cli.main(sys.argv[1:]))
"""


# --------------------------------------------------------------------------- helpers and fixtures


@dataclass(frozen=True)
class Key:
    public: Path
    secret: Path
    fingerprint: str


def _key(directory: Path, name: str) -> Key:
    made = signing.generate_key(f"{name} <{name.lower()}@example.invalid>", signing.KeyAlgorithm.ED25519)
    public, secret = signing.write_key_pair(str(directory / name.lower()), made)
    return Key(Path(public), Path(secret), made.fingerprint)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    """``signer`` signs every image; ``stranger`` is trusted by no one."""
    directory = tmp_path_factory.mktemp("keys")
    return {"signer": _key(directory, "Signer"), "stranger": _key(directory, "Stranger")}


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, root: Path) -> None:
    """Wait until the web server ``process`` serves ``root`` on ``port`` (over https for 443,
    unverified): a connection is not enough, another server may hold the port (then this
    one exits, and the module ran its tests against that one, failing by the dozen:
    newcomer review)."""
    marker = root / f".served-by-{process.pid}"
    marker.write_text(str(process.pid))
    scheme = "https" if port == 443 else "http"
    context = ssl._create_unverified_context() if port == 443 else None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.skip(f"the web server on {HOST}:{port} did not start (port taken?): {log.read_text()[-500:]}")
        with socket.socket() as probe:  # (closed before the GET: a TLS server handshakes one at a time)
            listening = probe.connect_ex((HOST, port)) == 0
        if listening:
            try:
                with urllib.request.urlopen(f"{scheme}://{HOST}:{port}/{marker.name}", timeout=5,
                                            context=context) as answer:
                    if answer.read() == marker.read_bytes():
                        marker.unlink()
                        return
            except OSError:
                pass
            if process.poll() is not None:
                pytest.skip(f"{HOST}:{port} is taken by another server")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"the web server on {HOST}:{port} did not accept connections within 10 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Server:
    root: Path
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m http.server 80`` serving a fresh web root (stopped by its PID)."""
    if os.geteuid() != 0:
        pytest.skip("serving the discovery tree on port 80 (as discovery URLs have no port) needs root")
    base = tmp_path_factory.mktemp("web")
    root, log = base / "root", base / "http.log"
    root.mkdir()
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "http.server", "80", "--bind", HOST,
                                    "--directory", str(root)], stdout=out, stderr=subprocess.STDOUT,
                                   preexec_fn=die_with_pytest)
    try:
        _wait_for_port(80, process, log, root)
        yield Server(root, log)
    finally:
        _stop(process)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """This test's own prefix of the shared tree: ``127.0.0.1/<test name>``."""
    return f"{HOST}/" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _needs_ac_name() -> None:
    if "ac_name" not in {f.name for f in fields(ConvertOptions)}:
        pytest.skip("needs ConvertOptions.ac_name and output_name (the pipeline change of the mirror work)")


def publish(root: Path, name: str, key: Key, cache: Path, *, version: str = "latest",
            ac_name: str | None = None) -> Path:
    """Convert the shared busybox image named ``ac_name`` (default ``name``) by the real
    pipeline, signed by ``key``, to where the tree keeps ``name`` ``version`` linux/amd64."""
    _needs_ac_name()
    rel = aci_relpath(name, version, "linux", "amd64")
    out = root / posixpath.dirname(rel)
    [aci] = convert(f"oci-archive:{OCI_ARCHIVE}",
                    ConvertOptions(output_dir=str(out), cache_dir=str(cache), sign_key=str(key.secret),
                                   ac_name=ac_name or name, output_name=posixpath.basename(rel)))
    assert Path(aci.path) == root / rel and Path(f"{aci.path}.asc").is_file()
    return Path(aci.path)


def image_id(path: Path) -> str:
    """``sha512-`` of the uncompressed tar, computed here (not by docker2aci)."""
    digest = hashlib.sha512()
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return "sha512-" + digest.hexdigest()


def trust(trust_dir: Path, key: Key, prefix: str | None) -> Path:
    store = TrustStore(str(trust_dir))
    for cert in signing.read_certs(str(key.public)):
        store.add(cert, prefix)
    return trust_dir


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str


def run_discover(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> Result:
    """``docker2aci discover ARGS`` in a new process."""
    proc = subprocess.run([sys.executable, "-c", RUNNER, "discover", *[os.fspath(a) for a in args]],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


DiscoverCli = Callable[..., Result]


@pytest.fixture
def discover_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> DiscoverCli:
    """``docker2aci discover ARGS`` in this process (faster, for the refusals)."""
    if "discover" not in cli._COMMANDS:
        monkeypatch.setitem(cli._COMMANDS, "discover", cli._lazy_command("cli_discovery", "discover"))

    def run(*args: str | os.PathLike[str]) -> Result:
        capsys.readouterr()
        status = cli.main(["discover", *[os.fspath(a) for a in args]])
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return run


def _entries(name: str, version: str = "latest") -> list[DiscoveryEntry]:
    return [DiscoveryEntry(name, version, "linux", "amd64")]


# --------------------------------------------------------------------------- the tree's layout


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(("127.0.0.1/mirror/library/busybox", "latest", "linux", "amd64"),
                 "mirror/library/busybox-latest-linux-amd64.aci", id="the-brief-example"),
    pytest.param(("example.com/app", "1.0.2+build_7", "linux", "aarch64", "aci.asc"),
                 "app-1.0.2+build_7-linux-aarch64.aci.asc", id="signature-and-semver-build"),
    pytest.param(("example.com/a/b", "_private", "linux", "armv7l"), "a/b-_private-linux-armv7l.aci",
                 id="docker-tags-may-start-with-underscore"),
])
def test_aci_relpath(args: tuple[str, ...], expected: str) -> None:
    assert aci_relpath(*args) == expected


@pytest.mark.parametrize("args", [
    pytest.param(("example.com", "1", "linux", "amd64"), id="host-without-path"),
    pytest.param(("Example.com/app", "1", "linux", "amd64"), id="upper-case-name"),
    pytest.param(("example.com/../etc", "1", "linux", "amd64"), id="dotdot-in-name"),
    pytest.param(("localhost_5000/app", "1", "linux", "amd64"), id="first-component-not-a-host"),
    pytest.param(("example.com/app", "1/2", "linux", "amd64"), id="slash-in-version"),
    pytest.param(("example.com/app", "1..2", "linux", "amd64"), id="dotdot-in-version"),
    pytest.param(("example.com/app", "..", "linux", "amd64"), id="version-dotdot"),
    pytest.param(("example.com/app", ".hidden", "linux", "amd64"), id="version-starting-with-dot"),
    pytest.param(("example.com/app", "a b", "linux", "amd64"), id="space-in-version"),
    pytest.param(("example.com/app", "1", "linux/x", "amd64"), id="slash-in-os"),
    pytest.param(("example.com/app", "1", "linux", "amd64", "tar"), id="unknown-ext"),
])
def test_aci_relpath_refuses(args: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        aci_relpath(*args)


class _Html5Check(html.parser.HTMLParser):
    """Collects what a valid HTML5 page needs to have and the elements left open."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.doctype = ""
        self.stack: list[str] = []
        self.seen: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack}"
        self.stack.pop()


def _check_html5(data: bytes) -> None:
    check = _Html5Check()
    check.feed(data.decode("utf-8"))
    check.close()
    assert check.doctype == "DOCTYPE html"
    assert check.stack == []
    assert check.seen[:4] == ["html", "head", "meta", "meta"]  # charset first
    assert b'<meta charset="utf-8">' in data and b"<title>" in data


def test_the_keys_go_with_the_last_image(tmp_path: Path, keys: dict[str, Key]) -> None:
    """A tree whose every ACI was pruned lost its pages but kept ``pubkeys.gpg`` (newcomer
    review): the keys go with the last page that announced them."""
    prefix = "example.com/mirror"
    pubkeys = keys["signer"].public.read_bytes()
    first = write_pages(str(tmp_path), prefix, [DiscoveryEntry(f"{prefix}/app", "1", "linux", "amd64")], pubkeys)
    assert first.pubkeys == str(tmp_path / "mirror" / "pubkeys.gpg")
    emptied = write_pages(str(tmp_path), prefix, [], pubkeys)
    assert emptied.pubkeys is None and str(tmp_path / "mirror" / "pubkeys.gpg") in emptied.removed
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []


def test_pages_list_every_name_and_are_deterministic(tmp_path: Path, keys: dict[str, Key]) -> None:
    prefix = "example.com/mirror"
    entries = [DiscoveryEntry(f"{prefix}/library/busybox", v, "linux", a)
               for v in ("latest", "1.36") for a in ("amd64", "aarch64")]
    entries.append(DiscoveryEntry(f"{prefix}/team/app", "2.0", "linux", "amd64"))
    pubkeys = keys["signer"].public.read_bytes()
    first = write_pages(str(tmp_path / "a"), prefix, entries, pubkeys)
    shuffled = entries[::-1] + entries[:2]  # another order, with duplicates
    random.Random(7).shuffle(shuffled)
    second = write_pages(str(tmp_path / "b"), prefix, [(e.name, e.version, e.os, e.arch) for e in shuffled], pubkeys)

    rels = sorted(str(Path(p).relative_to(tmp_path / "a")) for p in first.pages)
    assert rels == ["mirror/index.html", "mirror/library/busybox/index.html", "mirror/team/app/index.html"]
    for path_a, path_b in zip(first.pages, second.pages):
        assert Path(path_a).read_bytes() == Path(path_b).read_bytes()
        _check_html5(Path(path_a).read_bytes())
    assert Path(first.pubkeys or "").read_bytes() == Path(second.pubkeys or "").read_bytes()
    assert first.pubkeys == str(tmp_path / "a" / "mirror" / "pubkeys.gpg")
    assert signing.read_certs(first.pubkeys)[0].fingerprint == keys["signer"].fingerprint
    keys_tag = MetaTag("ac-discovery-pubkeys", prefix, "https://example.com/mirror/pubkeys.gpg")
    page = (tmp_path / "a" / "mirror" / "library" / "busybox" / "index.html").read_text()
    assert parse_meta_tags(page) == [
        MetaTag("ac-discovery", f"{prefix}/library/busybox",
                "https://example.com/mirror/library/busybox-{version}-{os}-{arch}.{ext}"),
        keys_tag]
    assert page.count("<li>") == 4 and 'href="/mirror/library/busybox-1.36-linux-aarch64.aci"' in page
    prefix_page = (tmp_path / "a" / "mirror" / "index.html").read_text()
    assert [t.prefix for t in parse_meta_tags(prefix_page)] == [
        f"{prefix}/library/busybox", f"{prefix}/team/app", prefix]
    assert prefix_page.count("<li>") == 5


def test_a_bare_host_prefix_writes_the_root_page(tmp_path: Path) -> None:
    written = write_pages(str(tmp_path), "example.com", _entries("example.com/app"), scheme="http")
    assert sorted(written.pages) == [str(tmp_path / "app" / "index.html"), str(tmp_path / "index.html")]
    assert parse_meta_tags((tmp_path / "index.html").read_text()) == [
        MetaTag("ac-discovery", "example.com/app", "http://example.com/app-{version}-{os}-{arch}.{ext}")]


def test_page_text_is_html_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Valid AC names and versions hold no HTML special character; the checks are lifted
    # here to show that whatever reaches a page is escaped, and read back intact.
    monkeypatch.setattr(discovery, "is_ac_identifier", lambda _text: True)
    monkeypatch.setattr(discovery, "_LABEL_VALUE", re.compile(r".+"))
    name = 'example.com/a&b"<script>'
    write_pages(str(tmp_path), "example.com", [(name, "1'<2>", "linux", "amd64")])
    data = (tmp_path / "a&b\"<script>" / "index.html").read_text()
    assert "<script>" not in data and '"<' not in data
    assert "a&amp;b&quot;&lt;script&gt;" in data and "1&#x27;&lt;2&gt;" in data
    assert parse_meta_tags(data)[0] == MetaTag(
        "ac-discovery", name, "https://example.com/a%26b%22%3Cscript%3E-{version}-{os}-{arch}.{ext}")


_TAG = MetaTag("ac-discovery", "example.com", "https://h/{name}.{ext}")


@pytest.mark.parametrize(("page", "expected"), [
    pytest.param("<BODY><META CONTENT='example.com https://h/{name}.{ext}' NAME='ac-discovery'></BODY>", [_TAG],
                 id="upper-case-reversed-single-quoted-in-the-body"),
    pytest.param("<meta name=ac-discovery content='example.com\n  https://h/{name}.{ext} '/>", [_TAG],
                 id="unquoted-self-closing-any-space-between-the-parts"),
    pytest.param('<meta name="ac-discovery" content="example.com https://h/{name}.{ext}?a=1&amp;b=&#x32;">',
                 [MetaTag("ac-discovery", "example.com", "https://h/{name}.{ext}?a=1&b=2")],
                 id="character-references-decoded"),
    pytest.param('<meta name="ac-discovery" content="example.com">'
                 '<meta name="AC-DISCOVERY" content="example.com https://h/{name}.{ext}">', [],
                 id="no-url-or-another-name-ignored"),
    pytest.param('<!-- <meta name="ac-discovery" content="example.com https://c/{ext}"> -->'
                 '<script>x = \'<meta name="ac-discovery" content="example.com https://s/{ext}">\'</script>'
                 '<title><meta name="ac-discovery" content="example.com https://t/{ext}"></title>'
                 '<textarea><meta name="ac-discovery" content="example.com https://a/{ext}"></TEXTAREA >'
                 '<meta name="ac-discovery" content="example.com https://h/{name}.{ext}">', [_TAG],
                 id="not-in-comments-or-the-text-of-script-title-textarea-as-go-html-and-browsers"),
    pytest.param('<![x]> <![ y> <?php ?> </ 3> <a title=">"><meta name="ac-discovery" '
                 'content="example.com https://h/{name}.{ext}">', [_TAG],
                 id="bogus-comments-and-a-quoted-gt-python-html-parser-raised-assertionerror"),
    pytest.param('<meta name="ac-discovery" content="example.com https://h/{name}.{ext}"', [],
                 id="a-tag-the-page-ends-in-is-dropped"),
])
def test_meta_tags_are_found_as_an_html_tokenizer_finds_them(page: str, expected: list[MetaTag]) -> None:
    assert parse_meta_tags(page) == expected


@pytest.mark.parametrize("tail", [
    pytest.param("<a " * 10_000, id="an-unclosed-tag-of-tags"),
    pytest.param("<!--" * 25_000, id="unclosed-comments"),
])
def test_a_malformed_page_is_read_in_linear_time(tail: str) -> None:
    # a discovery page may be 16 MiB (MAX_PAGE_BYTES): Python 3.11's html.parser takes
    # quadratic time on such tails (12 s and 6 s on these 30 and 100 KB; hours on 16 MiB)
    started = time.monotonic()
    assert parse_meta_tags('<meta name="ac-discovery" content="example.com https://h/{name}.{ext}">' + tail) == [_TAG]
    assert time.monotonic() - started < 2


def test_a_page_python_html_parser_refused_is_read(tls_server: Path, server: Server, prefix: str,
                                                  keys: dict[str, Key], cache_dir: Path, tmp_path: Path) -> None:
    # A marked section that is not CDATA/IE's ("<![x]>") is a bogus comment in HTML; Python's
    # html.parser raised AssertionError on it, and discover died with a traceback.
    name = f"{prefix}/app"
    served = publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name))
    page = server.root / name.split("/", 1)[1] / "index.html"
    page.write_text(page.read_text().replace("<head>", "<head><![x]>"))
    out, env = tmp_path / "out", {**os.environ, "REQUESTS_CA_BUNDLE": str(tls_server)}

    result = run_discover("--trust-dir", trust(tmp_path / "t", keys["signer"], prefix), "--output-dir", out,
                          f"{name}:latest,os=linux,arch=amd64", env=env)

    assert result.status == 0, result.err
    assert result.out == f"{image_id(served)} {out / (name.replace('/', '-') + '-latest-linux-amd64.aci')}\n"


def test_pages_are_rewritten_from_scratch(tmp_path: Path) -> None:
    prefix = "example.com/m"
    write_pages(str(tmp_path), prefix, _entries(f"{prefix}/a") + _entries(f"{prefix}/b/c"))
    write_pages(str(tmp_path), "example.com/other", _entries("example.com/other/x"))
    (tmp_path / "m" / "mine").mkdir()
    (tmp_path / "m" / "mine" / "index.html").write_text("<p>not ours</p>")
    (tmp_path / "m" / "b" / "keep.aci").write_bytes(b"")

    again = write_pages(str(tmp_path), prefix, _entries(f"{prefix}/a"))

    assert again.removed == (str(tmp_path / "m" / "b" / "c" / "index.html"),)
    assert not (tmp_path / "m" / "b" / "c").exists()  # its emptied directory went with it
    assert (tmp_path / "m" / "b" / "keep.aci").exists()
    assert (tmp_path / "m" / "mine" / "index.html").read_text() == "<p>not ours</p>"
    assert (tmp_path / "other" / "x" / "index.html").exists()  # another prefix's page
    assert "b/c" not in (tmp_path / "m" / "index.html").read_text()
    gone = write_pages(str(tmp_path), prefix, [])
    assert sorted(gone.removed) == [str(tmp_path / "m" / "a" / "index.html"), str(tmp_path / "m" / "index.html")]
    assert [p.name for p in tmp_path.rglob(".docker2aci-*")] == []


def test_write_pages_refuses(tmp_path: Path, keys: dict[str, Key]) -> None:
    with pytest.raises(UsageError, match="not below the prefix"):
        write_pages(str(tmp_path), "example.com/m", _entries("example.com/other/a"))
    with pytest.raises(UsageError, match="would both be m/foo-bar-1-linux-amd64.aci"):
        write_pages(str(tmp_path), "example.com/m",
                    _entries("example.com/m/foo", "bar-1") + _entries("example.com/m/foo-bar", "1"))
    with pytest.raises(UsageError, match="both a file and a directory"):
        write_pages(str(tmp_path), "example.com/m",
                    _entries("example.com/m/foo") + _entries("example.com/m/foo-latest-linux-amd64.aci"))
    with pytest.raises(UsageError, match="scheme"):
        write_pages(str(tmp_path), "example.com/m", _entries("example.com/m/a"), scheme="ftp")
    with pytest.raises(SigningError):
        write_pages(str(tmp_path), "example.com/m", _entries("example.com/m/a"), b"not a key")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "m").write_text("a file where a directory goes")
    with pytest.raises(OutputError):
        write_pages(str(tmp_path), "example.com/m", _entries("example.com/m/a"))


def test_published_keys_are_public_only(tmp_path: Path, keys: dict[str, Key]) -> None:
    written = write_pages(str(tmp_path), "example.com/m", _entries("example.com/m/a"),
                          keys["signer"].secret.read_bytes())
    text = Path(written.pubkeys or "").read_text()
    assert text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----") and "PRIVATE" not in text


# --------------------------------------------------------------------------- templates


SPEC_TAGS = [  # spec/discovery.md, "Discovery URL"
    MetaTag("ac-discovery", "example.com", "https://storage.example.com/{os}/{arch}/{name}-{version}.{ext}"),
    MetaTag("ac-discovery", "example.com", "https://mirror.storage.example.com/{os}/{arch}/{name}-{version}.{ext}"),
    MetaTag("ac-discovery", "example.com", "https://storage.example.com/{os}/{arch}/{name}-latest.{ext}"),
]


@pytest.mark.parametrize(("labels", "expected"), [
    pytest.param({"version": "1.0.0", "os": "linux", "arch": "amd64"},
                 ["https://storage.example.com/linux/amd64/example.com/reduce-worker-1.0.0.aci",
                  "https://mirror.storage.example.com/linux/amd64/example.com/reduce-worker-1.0.0.aci"],
                 id="version-given-the-two-3-label-templates"),
    pytest.param({"os": "linux", "arch": "amd64"},
                 ["https://storage.example.com/linux/amd64/example.com/reduce-worker-latest.aci"],
                 id="no-version-only-the-latest-template"),
    pytest.param({"version": "1.0.0"}, [], id="os-missing-nothing-renders"),
])
def test_best_matching_templates(labels: dict[str, str], expected: list[str]) -> None:
    found = discovery.best_endpoints(SPEC_TAGS, "example.com/reduce-worker", labels)
    assert [e.aci for e in found] == expected
    assert [e.asc for e in found] == [url + ".asc" for url in expected]


def test_templates_need_ext_and_a_covering_prefix() -> None:
    tags = [MetaTag("ac-discovery", "example.com/ap", "https://x/{name}.{ext}"),  # not a whole component
            MetaTag("ac-discovery", "example.com", "https://x/{name}.aci"),  # no {ext}
            MetaTag("ac-discovery-pubkeys", "example.com", "https://x/{name}.{ext}")]
    assert discovery.best_endpoints(tags, "example.com/app", {}) == []


def test_no_version_falls_back_to_latest() -> None:
    tags = [MetaTag("ac-discovery", "h.example/a", "https://h.example/a-{version}-{os}-{arch}.{ext}")]
    [found] = discovery._page_endpoints(tags, "h.example/a", {"os": "linux", "arch": "amd64"}, "page")
    assert found.aci == "https://h.example/a-latest-linux-amd64.aci"


# --------------------------------------------------------------------------- discover, end to end


def test_discover_fetches_verifies_and_writes(server: Server, prefix: str, keys: dict[str, Key],
                                              cache_dir: Path, tmp_path: Path) -> None:
    name = f"{prefix}/library/busybox"
    served = publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name), keys["signer"].public.read_bytes())
    trust_dir = trust(tmp_path / "trust", keys["signer"], prefix)
    out = tmp_path / "out"

    result = run_discover("--insecure-options=http", "--trust-dir", trust_dir, "--output-dir", out,
                          f"{name},version=latest,os=linux,arch=amd64")

    assert result.status == 0, result.err
    path = out / f"{name.replace('/', '-')}-latest-linux-amd64.aci"
    assert result.out == f"{image_id(served)} {path}\n"
    assert sorted(p.name for p in out.iterdir()) == [path.name, f"{path.name}.asc"]
    assert path.read_bytes() == served.read_bytes()
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert "using plain http" in result.err  # the templates say https; the tree is served over http
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tempfile.mkdtemp(prefix="g", dir="/tmp")  # a short path: gpg-agent's socket lives there
    try:
        env = {**os.environ, "GNUPGHOME": home}
        subprocess.run(["gpg", "--batch", "--import", str(keys["signer"].public)], env=env, check=True,
                       capture_output=True)
        verified = subprocess.run(["gpg", "--batch", "--verify", f"{path}.asc", str(path)], env=env,
                                  capture_output=True, text=True, check=False)
        assert verified.returncode == 0, verified.stderr
        assert "Good signature" in verified.stderr
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": home}, capture_output=True,
                       check=False)
        shutil.rmtree(home, ignore_errors=True)


def test_discover_json_without_version_uses_latest_and_host_labels(
        server: Server, prefix: str, keys: dict[str, Key], cache_dir: Path, tmp_path: Path,
        discover_cli: DiscoverCli) -> None:
    if Platform.host().architecture != "amd64":
        pytest.skip("the shared image is linux/amd64 and the default labels are the host's")
    name = f"{prefix}/app"
    served = publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name))
    out = tmp_path / "out"

    trust_dir = trust(tmp_path / "t", keys["signer"], None)
    result = discover_cli("--json", "--insecure-options=http", "--trust-dir", trust_dir, "--output-dir", out, name)

    assert result.status == 0, result.err
    doc = json.loads(result.out)
    path = str(out / f"{name.replace('/', '-')}-latest-linux-amd64.aci")
    assert doc == {"image_id": image_id(served), "path": path, "name": name,
                   "labels": {"version": "latest", "os": "linux", "arch": "amd64"},
                   "url": f"http://{HOST}/{aci_relpath(name, 'latest', 'linux', 'amd64')}",
                   "signature": path + ".asc", "signer": keys["signer"].fingerprint}


@pytest.mark.parametrize("missing", ["aci", "signature"])
def test_a_missing_image_is_not_called_unsigned(server: Server, prefix: str, keys: dict[str, Key], cache_dir: Path,
                                                tmp_path: Path, discover_cli: DiscoverCli, missing: str) -> None:
    """The signature is fetched first: a version never published was reported as a missing
    signature, as if the image were there unsigned (newcomer review). Now the ACI is asked
    for then: its own 404 is the error; when it is there, the error says it is unsigned."""
    name = f"{prefix}/app"
    served = publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name))
    version = "9" if missing == "aci" else "latest"
    if missing == "signature":
        Path(f"{served}.asc").unlink()
    url = f"http://{HOST}/{aci_relpath(name, version, 'linux', 'amd64')}"

    result = discover_cli("--insecure-options=http", "--trust-dir", trust(tmp_path / "t", keys["signer"], None),
                          "--output-dir", tmp_path / "out", f"{name}:{version},os=linux,arch=amd64")

    assert result.status == 1
    expected = (f"fetching the ACI of {name}: {url} answered HTTP 404" if missing == "aci" else
                f"fetching the signature of {name}: {url}.asc answered HTTP 404; the ACI is there, unsigned "
                "(--insecure-options=image takes it without a signature)")
    assert result.err == f"Error: discovering {name}: no endpoint could be fetched: {expected}\n"


def test_a_name_without_a_page_is_found_on_a_parent_page(server: Server, prefix: str, keys: dict[str, Key],
                                                         cache_dir: Path, tmp_path: Path,
                                                         discover_cli: DiscoverCli) -> None:
    name = f"{prefix}/library/busybox"
    publish(server.root, name, keys["signer"], cache_dir)
    written = write_pages(str(server.root), prefix, _entries(name))
    own_page = server.root / name.split("/", 1)[1] / "index.html"
    assert str(own_page) in written.pages
    own_page.unlink()  # its page gone: 404; then .../library/ is a directory listing without tags;
    own_page.parent.rmdir()  # then the prefix page has the tag

    result = discover_cli("--debug", "--insecure-options=http", "--trust-dir",
                          trust(tmp_path / "t", keys["signer"], prefix), "--output-dir", tmp_path / "out",
                          f"{name}:latest,os=linux,arch=amd64")

    assert result.status == 0, result.err
    log = server.log.read_text()
    path = "/" + prefix.split("/", 1)[1]
    assert f'"GET {path}/library/busybox?ac-discovery=1 HTTP/1.1" 404' in log
    assert f'"GET {path}/library/?ac-discovery=1 HTTP/1.1" 200' in log
    assert f'"GET {path}/?ac-discovery=1 HTTP/1.1" 200' in log


def test_a_tampered_aci_is_refused_and_nothing_is_left(server: Server, prefix: str, keys: dict[str, Key],
                                                       cache_dir: Path, tmp_path: Path) -> None:
    name = f"{prefix}/library/busybox"
    served = publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name))
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF
    served.write_bytes(bytes(data))
    out = tmp_path / "out"

    result = run_discover("--insecure-options=http", "--trust-dir", trust(tmp_path / "t", keys["signer"], prefix),
                          "--output-dir", out, f"{name},version=latest,os=linux,arch=amd64")

    assert result.status == 1, result.err
    assert "BAD signature" in result.err and "http://127.0.0.1/" in result.err
    assert not out.exists()


def test_an_untrusted_key_is_refused(server: Server, prefix: str, keys: dict[str, Key], cache_dir: Path,
                                     tmp_path: Path, discover_cli: DiscoverCli) -> None:
    name = f"{prefix}/library/busybox"
    publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name))
    out = tmp_path / "out"

    result = discover_cli("--insecure-options=http", "--trust-dir", trust(tmp_path / "t", keys["stranger"], prefix),
                          "--output-dir", out, f"{name},version=latest,os=linux,arch=amd64")

    assert result.status == 1
    assert "not trusted" in result.err and f'prefix looked up: "{name}"' in result.err
    assert not out.exists()


@pytest.mark.parametrize(("insecure", "trusted_for_name"), [
    pytest.param("http", False, id="signature-checked-trusted-root-key"),
    pytest.param("http,image", False, id="signature-not-checked"),
    # the signer is trusted for the name asked for, not for the name the image carries: the
    # refusal said "not trusted" for the other name (discovery review); rkt checks the name
    # first, as now
    pytest.param("http", True, id="signature-checked-key-trusted-for-the-name-asked"),
])
def test_a_wrong_name_in_the_manifest_is_refused(server: Server, prefix: str, keys: dict[str, Key],
                                                 cache_dir: Path, tmp_path: Path, insecure: str,
                                                 trusted_for_name: bool, discover_cli: DiscoverCli) -> None:
    name = f"{prefix}/library/busybox"
    publish(server.root, name, keys["signer"], cache_dir, ac_name=f"{HOST}/elsewhere/busybox")
    write_pages(str(server.root), prefix, _entries(name))
    out = tmp_path / "out"

    trust_dir = trust(tmp_path / "t", keys["signer"], name if trusted_for_name else None)
    result = discover_cli(f"--insecure-options={insecure}", "--trust-dir", trust_dir,
                          "--output-dir", out, f"{name},version=latest,os=linux,arch=amd64")

    assert result.status == 1
    assert f"names it '{HOST}/elsewhere/busybox', not '{name}'" in result.err
    assert not out.exists()


def test_a_fetch_without_the_signature_leaves_no_older_signature_beside_the_aci(
        server: Server, prefix: str, keys: dict[str, Key], cache_dir: Path, tmp_path: Path,
        discover_cli: DiscoverCli) -> None:
    """``--insecure-options=image`` replaced the ACI of an earlier, verified fetch and left
    that fetch's ``.asc`` beside it, as if it were the new file's (discovery review)."""
    name = f"{prefix}/app"
    publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name))
    trust_dir, out = trust(tmp_path / "t", keys["signer"], None), tmp_path / "out"
    aci = f"{name.replace('/', '-')}-latest-linux-amd64.aci"
    for insecure, files in (("http", [aci, f"{aci}.asc"]), ("http,image", [aci])):
        result = discover_cli(f"--insecure-options={insecure}", "--trust-dir", trust_dir, "--output-dir", out,
                              f"{name},version=latest,os=linux,arch=amd64")
        assert result.status == 0, result.err
        assert sorted(os.listdir(out)) == files


def test_labels_that_do_not_match_are_refused(server: Server, prefix: str, keys: dict[str, Key],
                                              cache_dir: Path, tmp_path: Path,
                                              discover_cli: DiscoverCli) -> None:
    name = f"{prefix}/app"
    publish(server.root, name, keys["signer"], cache_dir, version="1.0")  # its manifest says version latest
    write_pages(str(server.root), prefix, _entries(name, "1.0"))
    out = tmp_path / "out"

    result = discover_cli("--insecure-options=http", "--trust-dir", trust(tmp_path / "t", keys["signer"], prefix),
                          "--output-dir", out, f"{name}:1.0,os=linux,arch=amd64")

    assert result.status == 1
    assert "version='1.0' (the manifest says 'latest')" in result.err
    assert not out.exists()


def test_no_page_anywhere_names_every_url_tried(server: Server, prefix: str, tmp_path: Path,
                                                discover_cli: DiscoverCli) -> None:
    result = discover_cli("--insecure-options=http", "--trust-dir", tmp_path / "t", "--output-dir", tmp_path / "out",
                          f"{prefix}/nothing,version=1,os=linux,arch=amd64")

    assert result.status == 1
    # the URLs that answered: plain http, after https failed (they said https://, which was not asked)
    assert f"; tried: http://{prefix}/nothing?ac-discovery=1: HTTP 404; " in result.err
    assert f"; http://{HOST}/?ac-discovery=1: no ac-discovery meta tag" in result.err  # the root's listing
    assert "https://" not in result.err.splitlines()[-1]
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_a_failed_discovery_removes_only_the_directories_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                discover_cli: DiscoverCli) -> None:
    """The page is found, so --output-dir and its missing parents are made, then the ACI's
    URL answers 404: the empty directories were left behind. Served without port 80: a
    static server on a free port behind the fault proxy as the http proxy; https (tried
    first) goes to the same proxy, which cannot tunnel, so plain http is used."""
    from faultproxy import FaultProxy

    root = tmp_path / "web"
    name = f"{HOST}/made/app"
    _page(Server(root, tmp_path / "unused.log"), name, f"http://{HOST}/missing/app-{{version}}.{{ext}}")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    web = QuietHTTPServer((HOST, 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    mine = tmp_path / "mine"
    mine.mkdir()
    try:
        with FaultProxy(f"http://{HOST}:{web.server_address[1]}", lifetime=60) as proxy:
            monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}")
            monkeypatch.setenv("HTTPS_PROXY", f"http://{proxy.host}")  # it answers CONNECT 501
            for variable in ("NO_PROXY", "no_proxy", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
                monkeypatch.delenv(variable, raising=False)
            results = [discover_cli("--insecure-options=http,image", "--output-dir", out,
                                    f"{name}:1,os=linux,arch=amd64")
                       for out in (tmp_path / "new" / "deeper" / "out", mine)]
            tried = [seen.path for seen in proxy.requests]
    finally:
        web.shutdown()
        web.server_close()
        thread.join(10)

    for result in results:
        assert (result.status, result.err) == (1, f"Error: discovering {name}: no endpoint could be fetched: "
                                               f"fetching the ACI of {name}: http://{HOST}/missing/app-1.aci "
                                               "answered HTTP 404\n")
    assert f"http://{HOST}/missing/app-1.aci" in tried  # the page was found, the ACI asked for
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "web"]  # new/deeper/out: all gone
    assert list(mine.iterdir()) == []  # the user's own directory stays


def test_retries_follow_the_registry_retry_policy(server: Server, prefix: str, keys: dict[str, Key], cache_dir: Path,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from faultproxy import Fault, FaultProxy

    name = f"{prefix}/app"
    publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name))
    options = discovery.DiscoverOptions(output_dir=str(tmp_path / "out"), insecure_http=True,
                                        trust_dir=str(trust(tmp_path / "t", keys["signer"], prefix)),
                                        retry=RetryPolicy(base_delay=0.01, jitter=0))
    labels = {"version": "latest", "os": "linux", "arch": "amd64"}
    with FaultProxy(f"http://{HOST}:80", lifetime=60) as proxy:  # a forward proxy for the http requests
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}")
        for variable in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(variable, raising=False)
        proxy.add(Fault.respond(503, target="any"), Fault.too_many_requests("1", target="any"))
        started = time.monotonic()
        found = discovery.discover(name, labels, options)
        waited = time.monotonic() - started
        paths = [seen.path for seen in proxy.requests]

    assert found.image_id and Path(found.path).is_file()
    page = f"http://{HOST}/{name.split('/', 1)[1]}?ac-discovery=1"
    assert paths[:3] == [page, page, page]  # 503, then 429, then answered
    assert waited >= 1.0  # Retry-After: 1 was honoured


def test_a_dripping_aci_download_is_cut_and_fetched_again(server: Server, prefix: str, keys: dict[str, Key],
                                                         cache_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that sends the ACI a byte every 0.1 s never lets a socket read time out; a
    read that takes longer than the limit cuts it, and the download starts again."""
    from faultproxy import Fault, FaultProxy, finishes_within

    name = f"{prefix}/app"
    publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name))
    options = discovery.DiscoverOptions(output_dir=str(tmp_path / "out"), insecure_http=True,
                                        trust_dir=str(trust(tmp_path / "t", keys["signer"], prefix)),
                                        retry=RetryPolicy(base_delay=0.01, jitter=0), slow_read=(1000, 0.5))
    labels = {"version": "latest", "os": "linux", "arch": "amd64"}
    with FaultProxy(f"http://{HOST}:80", lifetime=60) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}")
        for variable in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(variable, raising=False)
        proxy.add(Fault.drip(3000, 0.1, target="aci"))
        # without the limit: a byte every 0.1 s for the whole ACI
        found = finishes_within(30, lambda: discovery.discover(name, labels, options))
        acis = [seen.path for seen in proxy.requests if seen.path.endswith(".aci")]
    assert Path(found.path).is_file()
    assert len(acis) == 2 and acis[0] == acis[1]


def test_plain_http_templates_need_the_insecure_option(tls_server: Path, server: Server, prefix: str,
                                                       keys: dict[str, Key], cache_dir: Path, tmp_path: Path) -> None:
    name = f"{prefix}/app"
    publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name), scheme="http")  # the pages come over https
    args: list[str | os.PathLike[str]] = ["--trust-dir", trust(tmp_path / "t", keys["signer"], prefix),
                                          "--output-dir", tmp_path / "out", f"{name}:latest,os=linux,arch=amd64"]
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(tls_server)}

    refused = run_discover(*args, env=env)
    allowed = run_discover("--insecure-options=http", *args, env=env)

    assert refused.status == 1
    assert f"http://{HOST}/" in refused.err and "is plain http; allow it with --insecure-options=http" in refused.err
    assert allowed.status == 0, allowed.err


@pytest.mark.parametrize("args", [
    pytest.param(["--insecure-options=tls", "example.com/app"], id="unknown-insecure-option"),
    pytest.param(["Example.com/app"], id="not-an-ac-identifier"),
    pytest.param(["example.com/app,version"], id="label-without-value"),
    pytest.param(["example.com/app:1,version=2"], id="version-given-twice"),
    pytest.param(["example.com/app,OS=linux"], id="label-name-not-an-identifier"),
    pytest.param([], id="no-name"),
])
def test_usage_errors_exit_2(args: list[str], discover_cli: DiscoverCli) -> None:
    assert discover_cli(*args).status == 2


def test_a_url_is_no_name_and_its_password_is_not_shown(discover_cli: DiscoverCli) -> None:
    """A URL was read as the name ``https`` with the version ``//user:secret@host/x``, which
    the error quoted whole, password and all (review)."""
    result = discover_cli("--json", "https://user:secret@127.0.0.1:1/x")
    assert (result.status, result.out) == (2, "")
    assert result.err.splitlines()[-1] == ("Error: 'https://***@127.0.0.1:1/x' is a URL: give the app's name "
                                           "(NAME[:VERSION][,LABEL=VALUE...]); discovery finds its URL")
    assert "secret" not in result.err


# --------------------------------------------------------------------------- --trust-keys-from-https


_TLS_SERVER = """import functools, http.server, ssl, sys
root, cert, key = sys.argv[1:4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 443), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
httpd.serve_forever()
"""


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docker2aci discovery test")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_server(server: Server, tmp_path: Path) -> Iterator[Path]:
    """The same web root over https on port 443 for one test; yields its CA file."""
    cert, key = _self_signed(tmp_path)
    log = tmp_path / "https.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-c", _TLS_SERVER, str(server.root), str(cert), str(key)],
                                   stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_pytest)
    try:
        _wait_for_port(443, process, log, server.root)
        yield cert
    finally:
        _stop(process)


def test_trust_keys_from_https_trusts_the_announced_keys(tls_server: Path, server: Server, prefix: str,
                                                         keys: dict[str, Key], cache_dir: Path,
                                                         tmp_path: Path) -> None:
    name = f"{prefix}/library/busybox"
    served = publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name), keys["signer"].public.read_bytes())
    trust_dir, out = tmp_path / "trust", tmp_path / "out"
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(tls_server)}

    refused = run_discover("--trust-dir", trust_dir, "--output-dir", out, f"{name}:latest,os=linux,arch=amd64",
                           env=env)
    assert refused.status == 1 and "not trusted" in refused.err  # not without the flag
    result = run_discover("--trust-keys-from-https", "--trust-dir", trust_dir, "--output-dir", out,
                          f"{name}:latest,os=linux,arch=amd64", env=env)

    assert result.status == 0, result.err
    assert result.out == f"{image_id(served)} {out / (name.replace('/', '-') + '-latest-linux-amd64.aci')}\n"
    assert "plain http" not in result.err
    [key] = TrustStore(str(trust_dir)).entries()
    assert (key.prefix, key.fingerprint) == (name, keys["signer"].fingerprint)  # the name, as rkt


def test_trust_keys_from_https_trusts_them_for_the_name_not_the_tags_prefix(
        tls_server: Path, server: Server, prefix: str, keys: dict[str, Key], cache_dir: Path,
        tmp_path: Path) -> None:
    # The page of one team's image announces a key for the whole host: rkt trusts the keys it
    # fetches for the name being fetched (AddKeys(pkls, appName, ...)); trusting them for the
    # prefix the page chose let that team sign images of every other path of the host.
    name, other = f"{prefix}/team-a/app", f"{prefix}/team-b/app"
    publish(server.root, name, keys["signer"], cache_dir)
    other_aci = publish(server.root, other, keys["signer"], cache_dir)
    team_path = prefix.split("/", 1)[1] + "/team-a"
    shutil.copy(keys["signer"].public, server.root / team_path / "keys.gpg")
    (server.root / team_path / "app").mkdir()
    (server.root / team_path / "app" / "index.html").write_text(
        f'<meta name="ac-discovery" content="{name} '
        f'https://{HOST}/{team_path}/app-{{version}}-{{os}}-{{arch}}.{{ext}}">\n'
        f'<meta name="ac-discovery-pubkeys" content="{HOST} https://{HOST}/{team_path}/keys.gpg">\n')
    trust_dir = tmp_path / "trust"
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(tls_server)}

    result = run_discover("--trust-keys-from-https", "--trust-dir", trust_dir, "--output-dir", tmp_path / "out",
                          f"{name}:latest,os=linux,arch=amd64", env=env)

    assert result.status == 0, result.err
    assert [(k.prefix, k.fingerprint) for k in TrustStore(str(trust_dir)).entries()] == [
        (name, keys["signer"].fingerprint)]
    with pytest.raises(VerificationError) as refused:
        signing.verify_aci(str(other_aci), str(trust_dir))
    assert refused.value.reason == "prefix-mismatch"


def test_trust_keys_from_https_ignores_keys_seen_over_http(server: Server, prefix: str, keys: dict[str, Key],
                                                          cache_dir: Path, tmp_path: Path) -> None:
    name = f"{prefix}/library/busybox"
    publish(server.root, name, keys["signer"], cache_dir)
    write_pages(str(server.root), prefix, _entries(name), keys["signer"].public.read_bytes())
    out = tmp_path / "out"

    result = run_discover("--trust-keys-from-https", "--insecure-options=http", "--trust-dir", tmp_path / "trust",
                          "--output-dir", out, f"{name}:latest,os=linux,arch=amd64")

    assert result.status == 1
    assert "did not come over https" in result.err and "not trusted" in result.err
    assert not (tmp_path / "trust").exists()
    assert not out.exists()


class _Recorder:
    """A plain http (or, with ``tls``, https) server on a free port of 127.0.0.1 that records
    each request's path and ``Authorization`` header; ``/redirect/X`` answers 302 to
    ``redirect_to`` + ``X``, anything else 404."""

    def __init__(self, tls: tuple[Path, Path] | None = None, redirect_to: str = "") -> None:
        seen: list[tuple[str, str | None]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append((self.path, self.headers.get("Authorization")))
                if self.path.startswith("/redirect/"):
                    self.send_response(302)
                    self.send_header("Location", redirect_to + self.path.removeprefix("/redirect/"))
                else:
                    self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        if tls is not None:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.base = f"{'https' if tls else 'http'}://{HOST}:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def _page(server: Server, name: str, template: str) -> None:
    page = server.root / name.split("/", 1)[1] / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text(f'<meta name="ac-discovery" content="{name} {template}">\n')


def test_no_netrc_credentials_are_sent_even_on_a_redirect(server: Server, prefix: str, tmp_path: Path) -> None:
    # requests adds ~/.netrc's entry for the host (also a redirect's) when trust_env is set
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {HOST}\nlogin alice\npassword s3cret\n")
    netrc.chmod(0o600)
    name = f"{prefix}/app"
    with _Recorder() as target, _Recorder(redirect_to=target.base) as first:
        _page(server, name, first.base + "redirect/app-{version}.{ext}")
        result = run_discover("--insecure-options=http", "--trust-dir", tmp_path / "t", "--output-dir",
                              tmp_path / "out", f"{name}:1,os=linux,arch=amd64",
                              env={**os.environ, "NETRC": str(netrc), "HOME": str(tmp_path)})
        seen = first.seen + target.seen

    assert result.status == 1
    assert ("/redirect/app-1.aci.asc", None) in first.seen and ("/app-1.aci.asc", None) in target.seen
    assert [auth for _, auth in seen] == [None] * len(seen)


def test_a_redirect_to_plain_http_is_refused_before_it_is_requested(
        tls_server: Path, server: Server, prefix: str, tmp_path: Path) -> None:
    name = f"{prefix}/app"
    tls = (tls_server, tls_server.parent / "key.pem")
    with _Recorder() as plain, _Recorder(tls, redirect_to=plain.base) as secure:
        _page(server, name, secure.base + "redirect/app-{version}.{ext}")
        result = run_discover("--trust-dir", tmp_path / "t", "--output-dir", tmp_path / "out",
                              f"{name}:1,os=linux,arch=amd64",
                              env={**os.environ, "REQUESTS_CA_BUNDLE": str(tls_server)})
        tried = list(secure.seen)

    assert result.status == 1
    assert "redirects to plain http" in result.err and "--insecure-options=http" in result.err
    assert [path for path, _ in tried] == ["/redirect/app-1.aci.asc"]
    assert plain.seen == []  # nothing went over plain http


@pytest.mark.parametrize("version", ["..", ".", "../../x", "a/b", "a\\b"])
def test_label_values_that_would_leave_the_template_are_refused(version: str, discover_cli: DiscoverCli) -> None:
    # ".." is a dot-segment (requests resolves it: /t/{version}/x.aci fetched /x.aci), and
    # common static servers decode %2F before resolving them
    result = discover_cli(f"example.com/app,version={version}")
    assert result.status == 2
    assert "cannot be put in a discovery URL" in result.err
    with pytest.raises(UsageError):
        discovery.discover("example.com/app", {"version": version})


@pytest.mark.parametrize("header, expected", [
    ("1234", 1234), ("", -1), ("-5", -1), (" 12", -1), ("\u00b2", -1), ("1" * 30, -1),  # "\u00b2".isdigit()
])
def test_content_length_is_read_only_when_plain(header: str, expected: int) -> None:
    # HTTP headers arrive as Latin-1 text: a server's odd Content-Length is ignored, never a crash
    assert discovery._content_length(header) == expected


def test_a_gzip_encoded_download_is_measured_on_the_wire(tmp_path: Path) -> None:
    """A server may gzip a download although identity was asked for: the body is decoded,
    and the Content-Length (of the encoded bytes) is compared with what came over the
    wire, not with the decoded bytes (random bytes grow when gzipped: they were taken for
    a cut connection, every time)."""
    plain = random.Random(5).randbytes(200_000)
    encoded = gzip.compress(plain)
    assert len(encoded) > len(plain)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer((HOST, 0), Handler)
    serving = threading.Thread(target=httpd.serve_forever, daemon=True)
    serving.start()
    try:
        with requests.get(f"http://{HOST}:{httpd.server_address[1]}/x.aci", stream=True, timeout=10) as resp:
            out = io.BytesIO()
            discovery._copy_body(resp, out, 10 << 20, "x.aci")
        assert out.getvalue() == plain
    finally:
        httpd.shutdown()
        httpd.server_close()
        serving.join(10)


def test_a_host_name_that_does_not_exist_is_not_retried(tmp_path: Path) -> None:
    """A discovery host that does not resolve was retried four times (8 s of backoff)
    before the error, where pulls give up at once, as Go's clients do for a DNS error
    that is not temporary (new-user review). ``.invalid`` never resolves (RFC 6761)."""
    try:
        socket.getaddrinfo("nosuchhost.invalid", 443)
    except socket.gaierror as err:
        if err.errno not in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            pytest.skip(f"this machine's resolver does not say the name is unknown: {err}")
    started = time.monotonic()
    result = run_discover("--output-dir", tmp_path / "out", "nosuchhost.invalid/app")
    assert (result.status, result.out) == (1, "")
    assert result.err == ("Error: discovering nosuchhost.invalid/app: cannot reach "
                          "https://nosuchhost.invalid/app?ac-discovery=1: the host name does not resolve\n")
    assert time.monotonic() - started < 5 and not (tmp_path / "out").exists()
