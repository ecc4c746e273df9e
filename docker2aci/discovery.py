"""appc image discovery (appc ``spec/discovery.md``): the static tree a mirror serves, and
the client that finds, fetches and checks an image by name and labels.

The tree (served by any static web server whose web root is ``ROOT``). AC names are
``PREFIX/REPO``; the host is the name's first component and the URL path is the rest::

    ROOT/<name path>-<version>-<os>-<arch>.aci      the ACI (aci_relpath)
    ROOT/<name path>-<version>-<os>-<arch>.aci.asc  its detached signature
    ROOT/<name path>/index.html                     the discovery page of one name
    ROOT/<prefix path>/index.html                   the page of the prefix (ROOT/index.html
                                                    when the prefix is a bare host)
    ROOT/<prefix path>/pubkeys.gpg                  the ASCII-armored public keys

so ``127.0.0.1/mirror/library/busybox`` version ``latest`` for linux/amd64 is
``ROOT/mirror/library/busybox-latest-linux-amd64.aci``, and its page is
``ROOT/mirror/library/busybox/index.html``, which says::

    <meta name="ac-discovery" content="127.0.0.1/mirror/library/busybox
          https://127.0.0.1/mirror/library/busybox-{version}-{os}-{arch}.{ext}">
    <meta name="ac-discovery-pubkeys" content="127.0.0.1/mirror https://127.0.0.1/mirror/pubkeys.gpg">

A static server answers ``GET /mirror/library/busybox?ac-discovery=1`` with the page (often
after a redirect to the directory's ``/``); the prefix page carries one ``ac-discovery`` tag
per name below it, so a client whose name has no page of its own finds it there (the
spec's walk up the parent paths).

The client (:func:`discover`) follows the spec, with these decisions:

* Discovery URL ``https://{prefix}?ac-discovery=1`` for the name, then each parent path, on
  a 4xx or 5xx answer or when the page yields no usable template (the spec says "no
  ac-discovery tag"; rkt and appc's library also go on when no template renders).
  Redirects are followed. A connection failure stops the walk: every parent is on the
  same host.
* A tag's prefix-match must be the name or a parent of it by whole components
  (``example.com/ap`` does not cover ``example.com/app``; appc's library compares strings).
* Templates: ``{name}``, ``{ext}`` and one placeholder per label; a template is usable when
  every placeholder is substituted and it has ``{ext}``; of the usable ones only those with
  the most substituted labels are kept ("best matching"), tried in page order; schemes other
  than http(s) are skipped. Values are percent-encoded as URL path text.
* **No version given**: the templates are first rendered without a version (the spec's
  "latest pattern": templates without ``{version}``); when none renders, ``{version}`` is
  rendered as ``latest`` (what appc's discovery library did, and so ``rkt fetch
  example.com/app``; mirrors publish the ``latest`` tag as version ``latest``). The
  manifest's version is then not checked: the caller asked for none.
* ``insecure_http``: a plain ``http`` template or redirect is allowed, and an ``https`` URL
  (page, ACI, signature) whose connection fails (refused, unreachable, timed out: never a
  TLS error) is fetched over ``http`` instead; the host is remembered. Without it, a
  redirect to plain http is an error.
* The signature (``{ext}`` = ``aci.asc``) and the ACI are streamed to temporary files in the
  output directory (size caps), the signature is checked against the trust store exactly
  as ``docker2aci verify`` and ``run`` do (:func:`docker2aci.signing.verify_aci`) unless
  ``insecure_image``, in which case it is not fetched (spec, "Validation"); then the
  manifest's name must equal the name asked for and every label asked for must be in the
  manifest with the same value (spec, "Validation"); only then are the files renamed into
  place. On any failure nothing is left in the output directory.
* ``trust_keys_from_https`` (rkt's ``--trust-keys-from-https``): the keys of the
  ``ac-discovery-pubkeys`` tags that cover the name are fetched, only when both the page
  and the keys came over https, and trusted for the name being discovered (``trust add
  --prefix NAME``), as rkt does, before the signature is checked: never for the tag's own
  prefix-match, which the page chooses (a page under ``example.com/team-a`` that announces
  keys for ``example.com`` must not get them trusted for ``example.com/team-b``). A failure
  there is a warning, as in rkt: a key trusted already still verifies the image.

No credentials are sent (not even those of ``~/.netrc``, which requests would add), and a
redirect to plain http is refused before it is requested unless ``insecure_http``. HTTP
requests go through one ``requests`` session with the registry client's retry policy
(:class:`docker2aci.registry.retry.RetryPolicy`: 408, 429, 5xx and connection failures,
backoff with ``Retry-After``); a download cut mid-body starts again from the beginning.
"""

from __future__ import annotations

import contextlib
import html
import http.client
import io
import logging
import os
import posixpath
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3
from requests.auth import AuthBase

from converters.names import is_ac_identifier
from converters.numbers import plain_decimal

from . import __version__, cabundle
from .acifile import inspect_aci
from .atomic import atomic_file, make_output_dir, remove_made_dirs, remove_quietly
from .errors import Docker2ACIError, InvalidACI, OutputError, SigningError, UsageError
from .registry.client import (ContextAdapter, DeadlineAdapter, _certificate_failed, _connection_cause, _name_unknown,
                              _via_proxy)
from .redact import redact_url
from .registry.readdeadline import body_pieces
from .registry.retry import RetryPolicy
from .trust import (
    MAX_KEY_FILE_BYTES,
    TrustStore,
    default_trust_dir,
    parse_certs,
    prefix_matches,
)

log = logging.getLogger(__name__)

PAGE_FILE = "index.html"
"""The file name of a discovery page in its directory."""
PUBKEYS_FILE = "pubkeys.gpg"
"""The file name of the public keys, in the prefix's directory."""
GENERATOR = "docker2aci discovery"
"""Our pages carry ``<meta name="generator" content="docker2aci discovery PREFIX">``: a
:func:`write_pages` call for PREFIX removes only stale pages that carry its own."""
MAX_PAGE_BYTES = 16 * 1024 * 1024
"""The largest discovery page read (bytes); a prefix page lists every name below it."""
DISCOVERY_SLOW_READ = (64 * 1024, 60.0)
"""Downloads are read in pieces of at most 64 KiB, each within 60 s (under about 1 KiB/s
the connection is cut; see :mod:`docker2aci.registry.readdeadline`): smaller pieces than
the registry client's, because a cut download starts again from 0 here."""
MAX_ACI_BYTES = 64 * 1024 * 1024 * 1024
"""The default cap on a downloaded ACI (bytes)."""
ACI_EXTENSIONS = ("aci", "aci.asc")
"""The values of ``{ext}`` (spec, "Discovery Templates")."""
LATEST = "latest"
"""The version rendered when none is asked for and no template works without one."""
INSECURE_OPTIONS = frozenset({"http", "image"})
"""``--insecure-options`` values of ``discover``: ``http`` (plain http allowed), ``image``
(no signature check)."""

_HOST = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+~-]*")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# Errors of a body read that mean the connection broke (as the registry client's).
_BODY_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError, http.client.HTTPException, requests.RequestException, ConnectionError, TimeoutError)


class DiscoveryError(Docker2ACIError):
    """Discovery failed: no page or template for the name, a download failed, or the image
    found is not the one asked for (name or labels). The message names the URL and what
    is wrong.

    Attributes:
        url: the URL at fault (credentials removed), or ``None``.
        status: the HTTP status when one was received, else ``None``.
        fetch_failed: whether this is a failure to fetch (another endpoint may work),
            rather than a refusal of what was fetched.
    """

    reference = "discovery-error"

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None,
                 fetch_failed: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.fetch_failed = fetch_failed


# --------------------------------------------------------------------------- names and paths


def split_name(name: str, *, need_path: bool = True) -> tuple[str, str]:
    """``(host, path)`` of an AC name ``host/path``: the host is the first component.

    Args:
        name: an AC identifier (appc ``spec/types.md``).
        need_path: refuse a bare host (the tree needs a path; discovery does not).

    Raises:
        UsageError: not an AC identifier, no path when one is needed, or a first component
            that is not a host name (letters, digits, ``-`` and ``.``).
    """
    if not isinstance(name, str) or not is_ac_identifier(name):
        raise UsageError(f"image name {name!r} is not an AC identifier (lower-case letters and digits "
                         "separated by one of - . _ ~ /)")
    host, _, path = name.partition("/")
    if not _HOST.fullmatch(host):
        raise UsageError(f"image name {name!r}: its first component {host!r} is not a host name "
                         "(letters, digits, '-' and '.'), as discovery needs")
    if need_path and not path:
        raise UsageError(f"image name {name!r} has no path after its host ({host}/PATH)")
    return host, path


def _check_value(value: str, what: str) -> str:
    if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value) or ".." in value:
        raise UsageError(f"{what} {value!r} cannot be part of a file name: use letters, digits, '_' and "
                         "'. + ~ -' (not first), no '/' and no '..'")
    return value


def aci_relpath(name: str, version: str, os: str, arch: str, ext: str = "aci") -> str:
    """Where the ACI of ``name`` with labels version/os/arch lives in the tree, relative to
    its root: ``<name without host>-<version>-<os>-<arch>.<ext>`` (``/``-separated).

    Args:
        name: the AC name, ``host/path`` (``127.0.0.1/mirror/library/busybox``).
        version, os, arch: the label values (``latest``, ``linux``, ``amd64``).
        ext: ``aci`` or ``aci.asc`` (spec, "Discovery Templates").

    Returns:
        e.g. ``mirror/library/busybox-latest-linux-amd64.aci``.

    Raises:
        UsageError: a name that is not an AC identifier with a host and a path, a label
            value with ``/``, ``..``, another character outside ``[A-Za-z0-9_.+~-]`` or a
            first character outside ``[A-Za-z0-9_]``, or another ``ext``.
    """
    _, path = split_name(name)
    _check_value(version, "version")
    _check_value(os, "os")
    _check_value(arch, "arch")
    if ext not in ACI_EXTENSIONS:
        raise UsageError(f"ext {ext!r}: use one of {', '.join(ACI_EXTENSIONS)}")
    rel = f"{path}-{version}-{os}-{arch}.{ext}"
    if ".." in rel.split("/") or rel.startswith("/"):  # pragma: no cover - excluded by the checks above
        raise UsageError(f"{rel!r} is not a safe relative path")
    return rel


class DiscoveryEntry(NamedTuple):
    """One ACI of the tree: an AC name and its labels. A plain ``(name, version, os, arch)``
    tuple is accepted wherever an entry is."""

    name: str
    version: str
    os: str
    arch: str


@dataclass(frozen=True)
class PagesWritten:
    """What :func:`write_pages` did.

    Attributes:
        pages: the pages written (absolute paths), sorted.
        removed: our earlier pages removed because no entry needs them any more, sorted.
        pubkeys: the public keys file written, or ``None``.
    """

    pages: tuple[str, ...]
    removed: tuple[str, ...]
    pubkeys: str | None


def _url_path(path: str) -> str:
    return quote(path, safe="/")


def template_url(name: str, scheme: str = "https") -> str:
    """The ``ac-discovery`` URL template of ``name`` in the tree:
    ``{scheme}://HOST/<name path>-{version}-{os}-{arch}.{ext}``.

    Raises:
        UsageError: as :func:`split_name` (a path is needed).
    """
    host, path = split_name(name)
    return f"{scheme}://{host}/{_url_path(path)}-{{version}}-{{os}}-{{arch}}.{{ext}}"


def pubkeys_url(prefix: str, scheme: str = "https") -> str:
    """The ``ac-discovery-pubkeys`` URL of ``prefix``: ``{scheme}://HOST/<prefix path>/pubkeys.gpg``.

    Raises:
        UsageError: as :func:`split_name`.
    """
    host, path = split_name(prefix, need_path=False)
    return f"{scheme}://{host}/{_url_path(path) + '/' if path else ''}{PUBKEYS_FILE}"


def _page_relpath(name: str) -> str:
    _, path = split_name(name, need_path=False)
    return f"{path}/{PAGE_FILE}" if path else PAGE_FILE


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _generator_tag(prefix: str) -> str:
    return f'<meta name="generator" content="{_esc(GENERATOR + " " + prefix)}">'


@dataclass(frozen=True)
class _Tree:
    """What every page of one :func:`write_pages` call shares."""

    prefix: str
    scheme: str
    with_pubkeys: bool
    by_name: dict[str, list[DiscoveryEntry]]
    signed: set[str]


def _page_html(title: str, covered: list[str], tree: _Tree) -> bytes:
    """One discovery page: the tags for ``covered`` (and the prefix's keys), then the links
    to their ACIs, grouped by name. Every name and URL is HTML-escaped."""
    prefix, scheme, with_pubkeys = tree.prefix, tree.scheme, tree.with_pubkeys
    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             _generator_tag(prefix), f"<title>{_esc(title)}</title>"]
    lines += [f'<meta name="ac-discovery" content="{_esc(name + " " + template_url(name, scheme))}">'
              for name in covered]
    if with_pubkeys:
        lines.append(f'<meta name="ac-discovery-pubkeys" content="{_esc(prefix + " " + pubkeys_url(prefix, scheme))}">')
    lines += ["</head>", "<body>", f"<h1>{_esc(title)}</h1>"]
    if with_pubkeys:
        keys_href = "/" + _url_path(posixpath.join(split_name(prefix, need_path=False)[1], PUBKEYS_FILE))
        lines.append(f'<p>Signed with the keys in <a href="{_esc(keys_href)}">{_esc(PUBKEYS_FILE)}</a>.</p>')
    for name in covered:
        lines += [f"<h2>{_esc(name)}</h2>", "<ul>"]
        for entry in tree.by_name[name]:
            rel = aci_relpath(*entry)
            href = "/" + _url_path(rel)
            item = (f'<li><a href="{_esc(href)}">{_esc(posixpath.basename(rel))}</a> '
                    f"version {_esc(entry.version)}, {_esc(entry.os)}/{_esc(entry.arch)}")
            if rel in tree.signed:
                item += f' (<a href="{_esc(href)}.asc">signature</a>)'
            lines.append(item + "</li>")
        lines.append("</ul>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines).encode("utf-8")


def _parents(rel: str) -> Iterator[str]:
    parts = rel.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def write_pages(root: str, prefix: str, entries: Iterable[DiscoveryEntry | tuple[str, str, str, str]],
                pubkeys: bytes | None = None, scheme: str = "https") -> PagesWritten:
    """Write the discovery pages of a tree (see the module docstring), from scratch.

    Every page is computed from ``entries`` alone (sorted, duplicates dropped), so the same
    input gives the same bytes; each file is written atomically (mode 0644). A page that an
    earlier call for the same prefix wrote (it carries ``<meta name="generator"
    content="docker2aci discovery PREFIX">``) under the prefix's directory and that no
    entry needs any more is removed, with the directories it leaves empty; no other file
    is touched (the ACIs are the caller's; a ``pubkeys.gpg`` is left alone when
    ``pubkeys`` is ``None``, and removed when no entry is left to announce it). A page
    links an ACI's signature when ``<aci>.asc`` exists at the time. Several prefixes may
    share a root, each with its own call, as long as none is below another (their pages
    would overlap).

    Args:
        root: the web root (created if missing).
        prefix: the AC name prefix of every entry (``127.0.0.1/mirror``, or a bare host).
        entries: ``(name, version, os, arch)`` of each ACI (:class:`DiscoveryEntry` or a
            plain tuple); every name must be strictly below ``prefix``.
        pubkeys: OpenPGP public keys (armored or binary) to publish as
            ``<prefix path>/pubkeys.gpg``, re-armored from the parsed keys (secret key
            material is never written), and announced by ``ac-discovery-pubkeys`` tags.
        scheme: ``https`` (default) or ``http``, the scheme written in the templates.

    Returns:
        what was written and removed.

    Raises:
        UsageError: an invalid prefix, name, label value or scheme; a name not below
            ``prefix``; two entries that would share a file; a file that would also be a
            directory of the tree.
        SigningError: ``pubkeys`` holds no OpenPGP key.
        OutputError: a file cannot be written or removed.
    """
    if scheme not in ("https", "http"):
        raise UsageError(f"scheme {scheme!r}: use https or http")
    split_name(prefix, need_path=False)
    unique = sorted({DiscoveryEntry(*entry) for entry in entries})
    by_file: dict[str, DiscoveryEntry] = {}
    for entry in unique:
        rel = aci_relpath(*entry)
        if not prefix_matches(prefix, entry.name) or entry.name == prefix:
            raise UsageError(f"image name {entry.name!r} is not below the prefix {prefix!r}")
        if rel in by_file:
            raise UsageError(f"{tuple(by_file[rel])} and {tuple(entry)} would both be {rel}: "
                             "rename one (the tree is <name>-<version>-<os>-<arch>.aci)")
        by_file[rel] = entry
    names = sorted({e.name for e in unique})
    armored = None
    if pubkeys is not None:
        armored = "".join(str(cert) for cert in parse_certs(pubkeys, "the public keys to publish")).encode("ascii")
    _, prefix_path = split_name(prefix, need_path=False)
    keys_rel = f"{prefix_path}/{PUBKEYS_FILE}" if prefix_path else PUBKEYS_FILE
    signed = {rel for rel in by_file if os.path.isfile(os.path.join(root, *f"{rel}.asc".split("/")))}
    by_name: dict[str, list[DiscoveryEntry]] = {name: [] for name in names}
    for entry in unique:
        by_name[entry.name].append(entry)
    tree = _Tree(prefix, scheme, armored is not None, by_name, signed)
    pages = {_page_relpath(name): _page_html(name, [name], tree) for name in names}
    if names:
        pages[_page_relpath(prefix)] = _page_html(prefix, names, tree)
    if not names:  # no page announces keys, and nothing they sign is left
        armored = None
    files = set(pages) | set(by_file) | {f"{rel}.asc" for rel in by_file} | ({keys_rel} if armored else set())
    dirs = {d for rel in files for d in _parents(rel)}
    clash = sorted(files & dirs)
    if clash:
        raise UsageError(f"{clash[0]} would be both a file and a directory of the tree: rename the image")
    written = []
    try:
        for rel, data in sorted(pages.items()):
            written.append(_write(root, rel, data))
        keys_path = _write(root, keys_rel, armored) if armored is not None else None
        removed = _remove_stale_pages(root, prefix, set(pages))
        if pubkeys is not None and not names and os.path.isfile(stale := os.path.join(root, *keys_rel.split("/"))):
            os.remove(stale)  # an earlier call's keys, for ACIs all gone
            removed.append(stale)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""  # (the page or directory that failed)
        raise OutputError(f"writing the discovery pages under {root}: {where}{err.strerror or err}") from err
    return PagesWritten(tuple(written), tuple(removed), keys_path)


def _write(root: str, rel: str, data: bytes) -> str:
    dest = os.path.abspath(os.path.join(root, *rel.split("/")))
    os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
    with atomic_file(dest, 0o644) as (_, f):
        f.write(data)
    return dest


def _is_our_page(path: str, prefix: str) -> bool:
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return _generator_tag(prefix).encode() in head


def _remove_stale_pages(root: str, prefix: str, keep: set[str]) -> list[str]:
    """Remove the pages ``prefix`` wrote under its directory that are not in ``keep``."""
    _, prefix_path = split_name(prefix, need_path=False)
    base = os.path.abspath(os.path.join(root, *prefix_path.split("/"))) if prefix_path else os.path.abspath(root)
    removed = []
    for directory, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # no AC name component starts with "."
        if PAGE_FILE not in files:
            continue
        rel = os.path.relpath(os.path.join(directory, PAGE_FILE), os.path.abspath(root)).replace(os.sep, "/")
        path = os.path.join(directory, PAGE_FILE)
        if rel in keep or not _is_our_page(path, prefix):
            continue
        os.unlink(path)
        removed.append(path)
        current = directory
        while current != base and current.startswith(base + os.sep):
            try:
                os.rmdir(current)
            except OSError:
                break
            current = os.path.dirname(current)
    return sorted(removed)


# --------------------------------------------------------------------------- reading pages


@dataclass(frozen=True)
class MetaTag:
    """An ``ac-`` meta tag of a discovery page.

    Attributes:
        kind: ``ac-discovery`` or ``ac-discovery-pubkeys`` (other ``ac-`` names are kept too).
        prefix: the prefix-match.
        url: the URL template (``ac-discovery``) or URL (``ac-discovery-pubkeys``).
    """

    kind: str
    prefix: str
    url: str


# The HTML tokenizer's rules (WHATWG HTML, "Tokenization"), as far as finding start tags
# needs them, as Go's html.Tokenizer (appc's discovery library, so rkt) applies them: every
# step is a search forward from the current position, so a page is read in linear time
# (Python's html.parser takes quadratic time on some malformed pages, and raises on others).
# Not followed: the "script data escaped" states (``<script><!--<script>...``), where Go
# reads more of a page as script text than this does, as html.parser did.
_RAW_TEXT = frozenset({"iframe", "noembed", "noframes", "noscript", "plaintext", "script", "style", "textarea",
                       "title", "xmp"})
"""Elements whose content is text up to their end tag (Go's tokenizer's raw and RCDATA tags)."""
_MARKUP = re.compile(r"<(?:(!--)|(/[A-Za-z])|([A-Za-z])|[!?/])")
"""What a ``<`` opens: a comment, an end tag, a start tag, or a bogus comment (``<!DOCTYPE``,
``<![CDATA[``, ``<?``, ``</`` without a letter); any other ``<`` is text."""
_TAG_NAME = re.compile(r"([^\t\n\f\r />]*)[\t\n\f\r /]*(>)?")
_ATTRIBUTE = re.compile(r"([^\t\n\f\r />][^\t\n\f\r /=>]*)(?:[\t\n\f\r ]*(=)[\t\n\f\r ]*)?")
"""An attribute's name (whose first character may be ``=``) and the ``=`` of a value."""
_UNQUOTED_VALUE_END = re.compile(r"[\t\n\f\r >]")
_NEXT_ATTRIBUTE = re.compile(r"[^\t\n\f\r /]")
_COMMENT_END = re.compile(r"--!?>")


def _read_tag(page: str, start: int) -> tuple[str, dict[str, str], int] | None:
    """The tag whose name starts at ``page[start]`` (after ``<`` or ``</``): ``(lower-case
    name, attributes (lower-case names; character references decoded; the last of a name
    given twice), the index after its ``>``)``, or ``None`` when the page ends inside it."""
    match = _TAG_NAME.match(page, start)
    assert match is not None  # (it matches the empty string)
    name, pos = match.group(1).lower(), match.end()
    attrs: dict[str, str] = {}
    if match.group(2):
        return name, attrs, pos
    while pos < len(page):
        match = _ATTRIBUTE.match(page, pos)  # (never empty here: not a space, '/' or '>')
        assert match is not None
        key, pos, value = match.group(1).lower(), match.end(), ""
        if match.group(2) and page[pos:pos + 1] in ("\"", "'"):
            end = page.find(page[pos], pos + 1)
            if end < 0:
                return None
            value, pos = page[pos + 1:end], end + 1
        elif match.group(2):
            end_match = _UNQUOTED_VALUE_END.search(page, pos)
            end = end_match.start() if end_match else len(page)
            value, pos = page[pos:end], end
        attrs[key] = html.unescape(value) if "&" in value else value
        following = _NEXT_ATTRIBUTE.search(page, pos)
        if following is None:
            return None
        pos = following.start()
        if page[pos] == ">":
            return name, attrs, pos + 1
    return None


def _start_tags(page: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The start tags of an HTML page, in order: ``(lower-case name, attributes)``; comments,
    doctypes, end tags and the text of raw-text elements (``script``, ``title`` ...) skipped;
    a tag the page ends in is dropped."""
    pos = 0
    while opening := _MARKUP.search(page, pos):
        comment, end_tag, start_tag = opening.groups()
        if comment:
            end = _COMMENT_END.search(page, opening.start() + 2)  # (<!--> and <!---> are empty comments)
            pos = end.end() if end else len(page)
        elif end_tag or start_tag:
            tag = _read_tag(page, opening.end() - 1)
            if tag is None:
                return
            name, attrs, pos = tag
            if end_tag:
                continue
            yield name, attrs
            if name in _RAW_TEXT:
                end = re.compile(rf"</{re.escape(name)}[\t\n\f\r />]", re.IGNORECASE).search(page, pos)
                if end is None or name == "plaintext":
                    return
                pos = end.start()
        else:
            close = page.find(">", opening.start() + 1)  # a bogus comment: up to the next '>'
            pos = close + 1 if close >= 0 else len(page)


def parse_meta_tags(page: str) -> list[MetaTag]:
    """The ``<meta name="ac-..." content="PREFIX URL">`` tags of an HTML page, in order
    (spec, "Discovery URL"), found as an HTML tokenizer finds tags (see :func:`_start_tags`),
    in time linear in the page's length; tags without both parts are ignored."""
    tags = []
    for name, attrs in _start_tags(page):
        kind = attrs.get("name", "")
        parts = attrs.get("content", "").split(None, 1)
        if name == "meta" and kind.startswith("ac-") and len(parts) == 2:
            tags.append(MetaTag(kind, parts[0], parts[1].strip()))
    return tags


@dataclass(frozen=True)
class Endpoint:
    """A rendered template: where an ACI and its signature are.

    Attributes:
        aci: the ACI URL (``{ext}`` = ``aci``).
        asc: the signature URL (``{ext}`` = ``aci.asc``).
        template: the template it was rendered from.
        page: the discovery URL whose page held it.
        labels: the labels it was rendered with (``version`` = ``latest`` when that was
            the fallback).
    """

    aci: str
    asc: str
    template: str
    page: str
    labels: dict[str, str] = field(compare=False)


def render_template(template: str, name: str, labels: Mapping[str, str]) -> tuple[str, int] | None:
    """Substitute ``{name}`` and the labels in a URL template, leaving ``{ext}``.

    Returns:
        ``(url with {ext}, number of labels substituted)``, or ``None`` when a placeholder
        has no value or there is no ``{ext}`` (spec, "Discovery Templates").
    """
    used: set[str] = set()
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "ext":
            return match.group(0)
        if key == "name":
            return quote(name, safe="/")
        if key in labels:
            used.add(key)
            return quote(labels[key], safe="")
        missing.append(key)
        return match.group(0)

    rendered = _PLACEHOLDER.sub(substitute, template)
    if missing or "{ext}" not in template:
        return None
    return rendered, len(used)


def best_endpoints(tags: list[MetaTag], name: str, labels: Mapping[str, str], page: str = "") -> list[Endpoint]:
    """The best matching templates of ``tags`` for ``name`` and ``labels``, rendered, in page
    order (spec: all placeholders substituted, the most labels substituted). Only tags whose
    prefix-match covers ``name`` by whole components count."""
    found: list[tuple[str, int, str]] = []
    for tag in tags:
        if tag.kind != "ac-discovery" or not prefix_matches(tag.prefix, name):
            continue
        rendered = render_template(tag.url, name, labels)
        if rendered is not None:
            found.append((rendered[0], rendered[1], tag.url))
    if not found:
        return []
    best = max(count for _, count, _ in found)
    return [Endpoint(url.replace("{ext}", "aci"), url.replace("{ext}", "aci.asc"), template, page, dict(labels))
            for url, count, template in found if count == best]


# --------------------------------------------------------------------------- HTTP


class _PlainRedirect(Exception):
    """Internal: a redirect to a URL that is not https, refused before it is requested."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class _NoAuth(AuthBase):
    """No ``Authorization``: set as the session's auth, it keeps requests' netrc lookup
    (``trust_env``) from adding the user's ``~/.netrc`` credentials to a request."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class _Session(requests.Session):
    """A session that sends no credentials, even on a redirect (requests adds the netrc
    entry of a redirect's host in ``rebuild_auth`` whenever ``trust_env`` is set), and that
    refuses a redirect to a URL that is not https, unless ``plain_allowed``, before
    requesting it (requests would follow it first: the http request, with its headers,
    would already be on the wire)."""

    def __init__(self) -> None:
        super().__init__()
        self.auth = _NoAuth()
        self.plain_allowed = False

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        prepared_request.headers.pop("Authorization", None)
        if not self.plain_allowed and urlsplit(prepared_request.url or "").scheme != "https":
            raise _PlainRedirect(prepared_request.url or "")


class _Fetch:
    """One HTTP session for one discovery: retries, the https → http fallback per host, caps."""

    def __init__(self, *, insecure_http: bool, retry: RetryPolicy, timeout: tuple[float, float],
                 slow_read: tuple[int, float] = DISCOVERY_SLOW_READ) -> None:
        self.insecure_http = insecure_http
        self.retry = retry
        self.timeout = timeout
        self.slow_read = slow_read
        self.plain_hosts: set[str] = set()
        self.session = _Session()
        self.session.trust_env = True  # HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE
        self.session.mount("https://", ContextAdapter(cabundle.default_context))  # the CAs loaded once
        self.session.mount("http://", DeadlineAdapter())  # --insecure-options=http (deadlines as https has)
        self.session.max_redirects = 10
        self.session.headers.update({"User-Agent": f"docker2aci/{__version__} (appc discovery)",
                                     "Accept-Encoding": "identity"})

    def close(self) -> None:
        self.session.close()

    def get(self, url: str, what: str, *, https_only: bool = False) -> tuple[requests.Response, bool]:
        """GET ``url`` (streamed), any status.

        Returns:
            ``(response, secure)``: ``secure`` is whether every hop was https.

        Raises:
            DiscoveryError: a scheme that is not allowed, or the host cannot be reached
                (``fetch_failed``).
        """
        parts = urlsplit(url)
        shown = redact_url(url)
        if parts.scheme not in ("https", "http"):
            raise DiscoveryError(f"{what}: {shown}: only https and http URLs are fetched", url=shown,
                                 fetch_failed=True)
        if parts.scheme == "http" and (https_only or not self.insecure_http):
            raise DiscoveryError(f"{what}: {shown} is plain http"
                                 + ("" if https_only else "; allow it with --insecure-options=http"),
                                 url=shown, fetch_failed=True)
        if parts.scheme == "https" and not https_only and parts.netloc in self.plain_hosts:
            url = urlunsplit(("http",) + tuple(parts)[1:])
        elif parts.scheme == "https" and self.insecure_http and not https_only:
            try:
                resp = self._send(url, what, attempts=1, https_only=https_only)
            except _Unreachable as err:
                log.warning("%s: https failed (%s); using plain http (--insecure-options=http)", parts.netloc,
                            err.cause)
                self.plain_hosts.add(parts.netloc)
                url = urlunsplit(("http",) + tuple(parts)[1:])
            else:
                return self._checked(resp, what, https_only)
        try:
            resp = self._send(url, what, attempts=self.retry.attempts, https_only=https_only)
        except _Unreachable as err:
            raise _HostUnreachable(f"{what}: cannot reach {redact_url(url)}: {err.cause}", url=redact_url(url),
                                   fetch_failed=True) from err
        return self._checked(resp, what, https_only)

    def _checked(self, resp: requests.Response, what: str, https_only: bool) -> tuple[requests.Response, bool]:
        hops = [r.url for r in resp.history] + [resp.url]
        plain = [u for u in hops if urlsplit(u).scheme != "https"]
        if plain and (https_only or not self.insecure_http):
            resp.close()
            raise DiscoveryError(f"{what}: {redact_url(hops[0])} redirects to plain http ({redact_url(plain[0])})"
                                 + ("" if https_only else "; allow it with --insecure-options=http"),
                                 url=redact_url(plain[0]), fetch_failed=True)
        return resp, not plain

    def _send(self, url: str, what: str, *, attempts: int, https_only: bool = False) -> requests.Response:
        retry = 0
        shown = redact_url(url)
        while True:
            self.session.plain_allowed = self.insecure_http and not https_only
            try:
                resp = self.session.get(url, stream=True, timeout=self.timeout, allow_redirects=True)
            except _PlainRedirect as err:
                raise DiscoveryError(f"{what}: {shown} redirects to plain http ({redact_url(err.url)})"
                                     + ("" if https_only else "; allow it with --insecure-options=http"),
                                     url=redact_url(err.url), fetch_failed=True) from None
            except requests.exceptions.SSLError as err:
                raise DiscoveryError(f"{what}: TLS failure talking to {shown}: {_connection_cause(err)}",
                                     url=shown, fetch_failed=True) from err
            except requests.TooManyRedirects as err:
                raise DiscoveryError(f"{what}: {shown}: too many redirects", url=shown, fetch_failed=True) from err
            except (requests.ConnectionError, requests.Timeout) as err:
                if _certificate_failed(err):
                    # a proxy's certificate that fails: refused at once, as a server's is (and
                    # never a reason to fall back to plain http)
                    raise DiscoveryError(f"{what}: cannot reach {shown}{_via_proxy(err)}: {_connection_cause(err)}",
                                         url=shown, fetch_failed=True) from err
                retry += 1
                connect = isinstance(err, requests.ConnectionError) and not isinstance(err, requests.ReadTimeout)
                if retry >= attempts or _name_unknown(err):  # a name that does not exist: not retried, as for pulls
                    if connect:
                        raise _Unreachable(_connection_cause(err)) from err
                    raise DiscoveryError(f"{what}: {shown}: {_connection_cause(err)}", url=shown,
                                         fetch_failed=True) from err
                log.info("%s: cannot reach %s (%s); retry %d/%d", what, shown, _connection_cause(err), retry,
                         attempts - 1)
                self.retry.wait(retry)
                continue
            except requests.RequestException as err:
                raise DiscoveryError(f"{what}: {shown}: {type(err).__name__}: {err}", url=shown,
                                     fetch_failed=True) from err
            log.debug("GET %s -> %d", redact_url(resp.url), resp.status_code)
            if self.retry.retries_status(resp.status_code) and retry + 1 < self.retry.attempts:
                retry += 1
                delay = self.retry.delay(retry, resp.headers.get("Retry-After"))
                resp.close()
                log.info("%s: %s answered %d; retry %d/%d in %.2f s", what, shown, resp.status_code, retry,
                         self.retry.attempts - 1, delay)
                self.retry.sleep(delay)
                continue
            return resp

    def read(self, url: str, what: str, limit: int, *, https_only: bool = False) -> tuple[bytes, str, bool]:
        """The body of a 200 answer, at most ``limit`` bytes (see :meth:`download`).

        Returns:
            ``(body, final URL, secure)``.

        Raises:
            DiscoveryError: as :meth:`download`.
        """
        buffer = io.BytesIO()
        final, secure = self.download(url, what, buffer, limit, https_only=https_only)
        return buffer.getvalue(), final, secure

    def download(self, url: str, what: str, dest: BinaryIO, limit: int, *,
                 https_only: bool = False) -> tuple[str, bool]:
        """Stream a 200 answer into ``dest`` (truncated first), at most ``limit`` bytes; a
        connection cut mid-body starts the download again, up to the policy's attempts.

        Returns:
            ``(the URL the body came from (after redirects and the http fallback), whether
            every hop was https)``.

        Raises:
            DiscoveryError: another status, a larger body, or the connection kept breaking.
            OSError: ``dest`` cannot be written.
        """
        for attempt in range(1, self.retry.attempts + 1):
            dest.seek(0)
            dest.truncate()
            resp, secure = self.get(url, what, https_only=https_only)
            with contextlib.closing(resp):
                shown = redact_url(resp.url)
                if resp.status_code != 200:
                    raise _not_ok(resp, what)
                length = resp.headers.get("Content-Length", "")
                if _content_length(length) > limit:
                    raise DiscoveryError(f"{what}: {shown} is {length} bytes, more than the {limit}-byte limit",
                                         url=shown)
                log.debug("downloading %s", shown)
                try:
                    _copy_body(resp, dest, limit, f"{what}: {shown}", self.slow_read)
                except _BodyCut as cut:
                    cause = _connection_cause(cut.__cause__) if cut.__cause__ else "the body ended early"
                    if attempt == self.retry.attempts:
                        raise DiscoveryError(f"{what}: the connection to {shown} broke {attempt} times, last after "
                                             f"{cut.received} bytes ({cause})", url=shown, fetch_failed=True) from cut
                    log.info("%s: the connection to %s broke after %d bytes (%s); starting again (retry %d/%d)",
                             what, shown, cut.received, cause, attempt, self.retry.attempts - 1)
                    self.retry.wait(attempt)
                    continue
                dest.flush()
                return shown, secure
        raise AssertionError("unreachable")


def _content_length(value: str) -> int:
    """A ``Content-Length`` header's byte count, or -1 when it is absent or not a plain
    decimal number (headers are Latin-1 text)."""
    length = plain_decimal(value, 20)
    return -1 if length is None else length


class _BodyCut(Exception):
    """Internal: the connection broke (or the body ended early) after ``received`` bytes."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


def _copy_body(resp: requests.Response, dest: BinaryIO, limit: int, what: str,
               slow_read: tuple[int, float] = DISCOVERY_SLOW_READ) -> None:
    """Copy a response body to ``dest``, at most ``limit`` bytes.

    Raises:
        _BodyCut: the connection broke, a read took longer than
            :data:`DISCOVERY_SLOW_READ` allows, or fewer bytes than ``Content-Length`` came.
        DiscoveryError: more than ``limit`` bytes.
    """
    received = 0
    with contextlib.closing(body_pieces(resp, slow_read, decode_content=True)) as pieces:
        while True:
            try:
                chunk = next(pieces, b"")
            except _BODY_ERRORS as err:
                raise _BodyCut(received) from err
            if not chunk:
                break
            received += len(chunk)
            if received > limit:
                raise DiscoveryError(f"{what} is larger than the {limit}-byte limit")
            dest.write(chunk)
    length = resp.headers.get("Content-Length", "")
    if resp.raw.tell() < _content_length(length):  # the bytes on the wire: a gzip-encoded body is decoded above
        raise _BodyCut(received)


class _Unreachable(Exception):
    """Internal: the connection failed (refused, unreachable, connect timeout)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class _HostUnreachable(DiscoveryError):
    """Internal: the host of a URL cannot be reached (after the retries)."""


# --------------------------------------------------------------------------- the walk


@dataclass(frozen=True)
class _Found:
    endpoints: list[Endpoint]
    keys: list[tuple[MetaTag, bool]]  # (tag, whether its page came over https only)


def discovery_url(prefix: str) -> str:
    """``https://{prefix}?ac-discovery=1`` (spec, "Discovery URL")."""
    host, path = split_name(prefix, need_path=False)
    return f"https://{host}/{_url_path(path)}?ac-discovery=1"


def _walk(fetch: _Fetch, name: str, labels: Mapping[str, str], *, want_keys: bool) -> _Found:
    """Fetch the discovery pages of ``name`` and its parents until templates (and, when
    wanted, keys) are found."""
    parts = name.split("/")
    attempts: list[str] = []
    endpoints: list[Endpoint] = []
    keys: list[tuple[MetaTag, bool]] = []
    for end in range(len(parts), 0, -1):
        prefix = "/".join(parts[:end])
        url = discovery_url(prefix)
        try:
            body, final, secure = fetch.read(url, f"discovering {name}", MAX_PAGE_BYTES)
        except _HostUnreachable:
            raise  # every parent is on the same host
        except DiscoveryError as err:  # (the URL that answered: plain http after the fallback)
            attempts.append(f"{err.url or url}: HTTP {err.status}" if err.status is not None else str(err))
            log.debug("no discovery page at %s: %s", url, err)
            continue
        tags = parse_meta_tags(body.decode("utf-8", "replace"))
        if not endpoints:
            endpoints = _page_endpoints(tags, name, labels, final)
            if not endpoints:
                count = sum(1 for t in tags if t.kind == "ac-discovery")
                attempts.append(f"{redact_url(final)}: " + (
                    f"none of its {count} ac-discovery tag(s) covers {name} with labels {_show(labels)}"
                    if count else "no ac-discovery meta tag"))
                continue
            log.debug("%s: templates found at %s", name, url)
        keys += [(t, secure) for t in tags if t.kind == "ac-discovery-pubkeys" and prefix_matches(t.prefix, name)]
        if not want_keys or keys:
            break
    if not endpoints:
        raise DiscoveryError(f"discovering {name}: no usable ac-discovery template for it with labels "
                             f"{_show(labels)}; tried: " + "; ".join(attempts))
    return _Found(endpoints, keys)


def _page_endpoints(tags: list[MetaTag], name: str, labels: Mapping[str, str], page: str) -> list[Endpoint]:
    found = best_endpoints(tags, name, labels, page)
    if not found and "version" not in labels:
        found = best_endpoints(tags, name, {**labels, "version": LATEST}, page)
    return found


def _show(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(none)"


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class DiscoverOptions:
    """How :func:`discover` fetches and checks. Defaults are filled here.

    Attributes:
        output_dir: where the ACI (and its signature) are written (created if missing, and
            removed again when the discovery fails).
        insecure_http: allow plain http (``--insecure-options=http``; see the module docstring).
        insecure_image: do not fetch or check the signature (``--insecure-options=image``).
        trust_dir: the trust store; default :func:`docker2aci.trust.default_trust_dir`.
        trust_keys_from_https: trust the keys of the ``ac-discovery-pubkeys`` tags (https only).
        max_aci_bytes: the largest ACI downloaded (bytes).
        retry: the retry policy of every request.
        timeout: (connect, read) timeouts in seconds.
        slow_read: ``(bytes, seconds)``: downloads are read in pieces of at most that
            many bytes, and a piece that takes longer cuts the connection (:data:`DISCOVERY_SLOW_READ`).
    """

    output_dir: str = "."
    insecure_http: bool = False
    insecure_image: bool = False
    trust_dir: str | None = None
    trust_keys_from_https: bool = False
    max_aci_bytes: int = MAX_ACI_BYTES
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: tuple[float, float] = (10.0, 60.0)
    slow_read: tuple[int, float] = DISCOVERY_SLOW_READ


@dataclass(frozen=True)
class DiscoveredACI:
    """An image found by discovery and written to the output directory.

    Attributes:
        path: the ACI (absolute): ``<name, / → ->[-<version>][-<os>][-<arch>].aci`` from
            its manifest's labels.
        signature: its signature beside it (``<path>.asc``), or ``None`` when not checked.
        image_id: ``sha512-`` + 128 hex of the uncompressed tar.
        name: its AC name.
        labels: its manifest's labels.
        url: where the ACI was fetched from (after redirects and the http fallback).
        signer: the fingerprint of the key that signed it, or ``None`` when not checked.
    """

    path: str
    signature: str | None
    image_id: str
    name: str
    labels: dict[str, str]
    url: str
    signer: str | None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``docker2aci discover``."""
        return {"image_id": self.image_id, "path": self.path, "name": self.name, "labels": dict(self.labels),
                "url": self.url, "signature": self.signature, "signer": self.signer}


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` if every name is an AC identifier and every value is non-empty and can be
    put in a URL template: no ``/`` or ``\\`` and not ``.`` or ``..`` (percent-encoding does not
    help: ``..`` is a dot-segment that clients and servers resolve, and common static servers
    decode ``%2F`` before resolving them, so such a value would leave the template's directory).

    Raises:
        UsageError: otherwise.
    """
    for key, value in labels.items():
        if not is_ac_identifier(key):
            raise UsageError(f"label name {key!r} is not an AC identifier")
        if not isinstance(value, str) or not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise UsageError(f"label {key}: {value!r} is not a label value")
        if value in (".", "..") or "/" in value or "\\" in value:
            raise UsageError(f"label {key}: {value!r} cannot be put in a discovery URL (no '/' or '\\', "
                             "not '.' or '..')")
    return dict(labels)


def discover(name: str, labels: Mapping[str, str], options: DiscoverOptions | None = None) -> DiscoveredACI:
    """Find the image ``name`` with ``labels`` by appc discovery, fetch it, check it and
    write it to ``options.output_dir`` (see the module docstring for every rule).

    Args:
        name: the AC name (``127.0.0.1/mirror/library/busybox``); its first component is
            the host asked.
        labels: the labels asked for (``version``, ``os``, ``arch`` ...); the caller fills
            in defaults (``docker2aci discover`` uses the host's os/arch).
        options: see :class:`DiscoverOptions`.

    Returns:
        the image written.

    Raises:
        UsageError: an invalid name or label.
        DiscoveryError: no page or template, a download failed, or the image is not the
            one asked for (spec, "Validation": name and labels).
        VerificationError: the signature was refused (unsigned, bad, untrusted key ...).
        TrustStoreError, SigningError: the trust store or the signature cannot be read.
        OutputError: the output directory cannot be written.
    """
    options = options or DiscoverOptions()
    split_name(name, need_path=False)
    labels = check_labels(labels)
    fetch = _Fetch(insecure_http=options.insecure_http, retry=options.retry, timeout=options.timeout,
                   slow_read=options.slow_read)
    try:
        found = _walk(fetch, name, labels, want_keys=options.trust_keys_from_https and not options.insecure_image)
        if options.insecure_image:
            log.warning("%s: the signature is neither fetched nor checked (--insecure-options=image)", name)
        trust_dir = options.trust_dir or default_trust_dir()
        if options.trust_keys_from_https and not options.insecure_image:
            _trust_keys(fetch, name, found.keys, trust_dir)
        made = make_output_dir(options.output_dir)
        try:
            failures = []
            for endpoint in found.endpoints:
                try:
                    return _fetch_endpoint(fetch, name, labels, endpoint, options, trust_dir)
                except DiscoveryError as err:
                    if not err.fetch_failed:
                        raise
                    failures.append(str(err))
                    log.info("%s", err)
            raise DiscoveryError(f"discovering {name}: no endpoint could be fetched: " + "; ".join(failures),
                                 url=found.endpoints[-1].aci, fetch_failed=True)
        except BaseException:
            remove_made_dirs(made)  # a failure leaves no directory of ours behind (the user's stay)
            raise
    finally:
        fetch.close()


def _trust_keys(fetch: _Fetch, name: str, keys: list[tuple[MetaTag, bool]], trust_dir: str) -> None:
    """``--trust-keys-from-https``: trust the announced keys for ``name`` (as rkt's
    ``maybeFetchPubKeys``: ``AddKeys(..., appName, ...)``), whatever prefix the tag names."""
    if not keys:
        log.warning("%s: no ac-discovery-pubkeys tag covers it: no key trusted from https", name)
    store = TrustStore(trust_dir)
    for tag, page_secure in keys:
        where = f"{redact_url(tag.url)} (announced for prefix {tag.prefix})"
        if not page_secure:
            log.warning("not trusting the keys at %s: the discovery page did not come over https", where)
            continue
        try:
            data, _, _ = fetch.read(tag.url, f"fetching the keys of {tag.prefix}", MAX_KEY_FILE_BYTES,
                                    https_only=True)
            for cert in parse_certs(data, where):
                key = store.add(cert, name)
                log.warning('trusting the key %s for prefix "%s", fetched from %s (--trust-keys-from-https)',
                            cert.fingerprint, name, redact_url(tag.url))
                log.debug("wrote %s", key.path)
        except (DiscoveryError, SigningError) as err:
            log.warning("keys not trusted: %s", err)


def output_name(name: str, labels: Mapping[str, str]) -> str:
    """The file name of a discovered ACI: ``<name, / → ->[-<version>][-<os>][-<arch>].aci``.

    Raises:
        DiscoveryError: a label value that cannot be part of a file name.
    """
    parts = [name.replace("/", "-")]
    for key in ("version", "os", "arch"):
        if key in labels:
            try:
                parts.append(_check_value(labels[key], f"the manifest's {key} label"))
            except UsageError as err:
                raise DiscoveryError(str(err)) from err
    return "-".join(parts) + ".aci"


def _fetch_endpoint(fetch: _Fetch, name: str, labels: Mapping[str, str], endpoint: Endpoint,
                    options: DiscoverOptions, trust_dir: str) -> DiscoveredACI:
    """Download one endpoint into temporary files, check it, rename it into place."""
    from .signing import MAX_SIGNATURE_BYTES, verify_aci  # OpenPGP: only when fetching

    tmp_aci = tmp_asc = None
    try:
        try:
            tmp_asc = None if options.insecure_image else _temp_file(options.output_dir)
            tmp_aci = _temp_file(options.output_dir)
            if tmp_asc is not None:
                with open(tmp_asc, "r+b") as f:
                    try:
                        fetch.download(endpoint.asc, f"fetching the signature of {name}", f, MAX_SIGNATURE_BYTES)
                    except DiscoveryError as err:
                        raise _missing_signature(fetch, endpoint, name, err) if err.status == 404 else err
                    os.fsync(f.fileno())
            with open(tmp_aci, "r+b") as f:
                source, _ = fetch.download(endpoint.aci, f"fetching the ACI of {name}", f, options.max_aci_bytes)
                os.fsync(f.fileno())
                log.info("Downloaded %s (%d bytes)", source, f.tell())
        except OSError as err:
            raise OutputError(f"writing into {options.output_dir}: {err.strerror or err}") from err
        # the name and labels first, as rkt checks them (ValidateName, then the signature):
        # an image of another name is refused as such, not as signed by an untrusted key;
        # but a file that cannot be read is left to the signature to explain (tampering)
        unreadable: DiscoveryError | None = None
        try:
            image_id, manifest = _inspect_aci(tmp_aci, source)
        except DiscoveryError as err:
            unreadable = err
        else:
            found_labels = _validate(manifest, name, labels, source)
        signer = None
        if tmp_asc is not None:
            verified = verify_aci(tmp_aci, trust_dir, signature=tmp_asc, display=source)
            signer = verified.signer.fingerprint
        if unreadable is not None:
            raise unreadable
        dest = os.path.join(options.output_dir, output_name(name, found_labels))
        try:
            if tmp_asc is not None:
                os.replace(tmp_asc, dest + ".asc")
                tmp_asc = None
            else:  # an earlier fetch's signature is not this ACI's, whatever it was
                remove_quietly(dest + ".asc")
            os.replace(tmp_aci, dest)
            tmp_aci = None
        except OSError as err:
            raise OutputError(f"writing {dest}: {err.strerror or err}") from err
        path = os.path.abspath(dest)
        log.info("Wrote %s (%s)", path, image_id)
        return DiscoveredACI(path=path, signature=None if options.insecure_image else path + ".asc",
                             image_id=image_id, name=name, labels=found_labels, url=source, signer=signer)
    finally:
        for tmp in (tmp_aci, tmp_asc):
            if tmp is not None:
                remove_quietly(tmp)


def _not_ok(resp: requests.Response, what: str) -> DiscoveryError:
    """The error for an answer other than 200 to ``what`` (the URL it came from, redacted)."""
    shown = redact_url(resp.url)
    return DiscoveryError(f"{what}: {shown} answered HTTP {resp.status_code}", url=shown, status=resp.status_code,
                          fetch_failed=True)


def _missing_signature(fetch: _Fetch, endpoint: Endpoint, name: str, err: DiscoveryError) -> DiscoveryError:
    """The error for a signature that is not there (``err``, a 404): the ACI's own when the
    ACI is not there either (a version never published read as an unsigned one), else
    ``err`` saying that the ACI is there, unsigned. The ACI is asked for, not downloaded."""
    what = f"fetching the ACI of {name}"
    resp, _ = fetch.get(endpoint.aci, what)
    with contextlib.closing(resp):
        if resp.status_code != 200:
            return _not_ok(resp, what)
    return DiscoveryError(f"{err}; the ACI is there, unsigned (--insecure-options=image takes it without a "
                          "signature)", url=err.url, status=err.status, fetch_failed=True)


def _temp_file(directory: str) -> str:
    fd, path = tempfile.mkstemp(prefix=".docker2aci-", suffix=".tmp", dir=directory)
    os.fchmod(fd, 0o644)
    os.close(fd)
    return path


def _validate(manifest: Mapping[str, Any], name: str, labels: Mapping[str, str], url: str) -> dict[str, str]:
    """Spec "Validation": the manifest's name is ``name``; every label asked for is in it
    with the same value (others may have any value). Returns the manifest's labels."""
    found = manifest.get("name")
    if found != name:
        raise DiscoveryError(f"{url}: the image's manifest names it {found!r}, not {name!r}: refused "
                             "(appc discovery: the name must match)", url=url)
    raw = manifest.get("labels", [])
    have: dict[str, str] = {}
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str):
                have[item["name"]] = item["value"]
    wrong = [f"{k}={v!r} (the manifest says {have[k]!r})" if k in have else f"{k}={v!r} (absent from the manifest)"
             for k, v in sorted(labels.items()) if have.get(k) != v]
    if wrong:
        raise DiscoveryError(f"{url}: the image's labels do not match those asked for: {', '.join(wrong)}: refused",
                             url=url)
    return have


def _inspect_aci(path: str, url: str) -> tuple[str, dict[str, Any]]:
    """``(image ID, manifest)`` of an ACI (gzip, bzip2, xz or plain tar; appc ``spec/aci.md``),
    read once as a stream (:func:`docker2aci.acifile.inspect_aci`): the image ID is the
    SHA-512 of the whole uncompressed tar.

    Raises:
        DiscoveryError: not an ACI, zstd, or no valid manifest.
    """
    try:
        return inspect_aci(path)
    except InvalidACI as err:
        raise DiscoveryError(f"{url}: not a readable ACI: {err}", url=url) from err


__all__ = [
    "ACI_EXTENSIONS",
    "INSECURE_OPTIONS",
    "DiscoverOptions",
    "DiscoveredACI",
    "DiscoveryEntry",
    "DiscoveryError",
    "Endpoint",
    "MetaTag",
    "PagesWritten",
    "aci_relpath",
    "best_endpoints",
    "check_labels",
    "discover",
    "discovery_url",
    "output_name",
    "parse_meta_tags",
    "pubkeys_url",
    "render_template",
    "split_name",
    "template_url",
    "write_pages",
]
