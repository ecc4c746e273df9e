"""Session-wide test fixtures: real images built once per test session.

Every image fixture is built by ``fixtures/builders.py`` with the real tools
(umoci, skopeo, busybox-static) into one session temporary directory, the first
time a test asks for it, and reused by every later test. A fixture whose tool
is missing, or that needs root when the session is not root, is skipped with
the reason (CI installs the tools and runs as root, so nothing is skipped there).

Conventions: layouts hold the image under the tag ``latest``
(:data:`fixtures.builders.DEFAULT_TAG`); archives name it ``test/busybox:latest``
(:data:`fixtures.builders.TEST_REF`; skopeo's docker-archive writes
``docker.io/test/busybox:latest`` in ``RepoTags``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Make the repository's `fixtures` package importable when the project is not
# installed (pytest puts only tests/ on sys.path); the repo copy always wins.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from fixtures import builders, debian

T = TypeVar("T")

#: Where the bookworm image is cached between sessions, read once at start-up: fixtures
#: that point ``XDG_CACHE_HOME`` at a test's own directory must not move it.
BOOKWORM_CACHE = debian.default_cache_dir()


def _build_or_skip(build: Callable[[], T], *tools: str, root: bool = True) -> T:
    """Run ``build`` after checking its prerequisites; skip (not fail) if they are absent."""
    missing = builders.missing_tools(*tools)
    if missing:
        pytest.skip(str(builders.ToolMissingError(missing)))
    if root and os.geteuid() != 0:
        pytest.skip("building the busybox fixtures needs root (files owned by uid 1000, setuid bit)")
    return build()


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session directory that holds every built image."""
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def busybox_layout(fixture_dir: Path) -> Path:
    """OCI layout (umoci) of the 8-layer busybox image with every feature, tag ``latest``.

    Layers: 1 busybox + files, 2 plain whiteout, 3 per-file whiteouts, 4 opaque
    whiteout (hand-made tar), 5 hard links / /var/www / setuid / 150-char path /
    user.test xattr / symlinks, 6 /var/www dir -> symlink, 7 whiteout of a
    hard link's data-carrying name (hand-made), 8 hard link to a layer-1 file
    (hand-made). See fixtures/README.md.
    """
    return _build_or_skip(
        lambda: builders.build_busybox_layout(fixture_dir / "busybox-layout", builders.DEFAULT_TAG,
                                              features=True),
        "umoci", str(builders.BUSYBOX_BINARY))


@pytest.fixture(scope="session")
def busybox_basic_layout(fixture_dir: Path) -> Path:
    """OCI layout of the 4-layer busybox image (features=False), tag ``latest``:
    the same tree as ../shared/images/oci-layout and the demo image."""
    return _build_or_skip(
        lambda: builders.build_busybox_layout(fixture_dir / "busybox-basic-layout",
                                              builders.DEFAULT_TAG, features=False),
        "umoci", str(builders.BUSYBOX_BINARY))


@pytest.fixture(scope="session")
def busybox_docker_archive(busybox_layout: Path, fixture_dir: Path) -> Path:
    """skopeo ``docker-archive`` of :func:`busybox_layout`, named ``test/busybox:latest``
    (``RepoTags`` = ``docker.io/test/busybox:latest``; layers ``<diffid>.tar``)."""
    return _build_or_skip(
        lambda: builders.build_docker_archive(busybox_layout, fixture_dir / "busybox-docker-archive.tar"),
        "skopeo", root=False)


@pytest.fixture(scope="session")
def busybox_oci_archive(busybox_layout: Path, fixture_dir: Path) -> Path:
    """skopeo ``oci-archive`` of :func:`busybox_layout`, ref name ``test/busybox:latest``, gzip layers."""
    return _build_or_skip(
        lambda: builders.build_oci_archive(busybox_layout, fixture_dir / "busybox-oci-archive.tar"),
        "skopeo", root=False)


@pytest.fixture(scope="session")
def busybox_zstd_layout(busybox_layout: Path, fixture_dir: Path) -> Path:
    """OCI layout of :func:`busybox_layout` with zstd layers (skopeo), tag ``latest``."""
    return _build_or_skip(
        lambda: builders.build_zstd_layout(busybox_layout, fixture_dir / "busybox-zstd-layout"),
        "skopeo", root=False)


@pytest.fixture(scope="session")
def busybox_uncompressed_layout(busybox_layout: Path, fixture_dir: Path) -> Path:
    """OCI layout of :func:`busybox_layout` with plain-tar layers (skopeo via ``dir:``), tag ``latest``."""
    return _build_or_skip(
        lambda: builders.build_uncompressed_layout(busybox_layout,
                                                   fixture_dir / "busybox-uncompressed-layout"),
        "skopeo", root=False)


@pytest.fixture(scope="session")
def busybox_docker25_save(busybox_layout: Path, fixture_dir: Path) -> Path:
    """Docker 25+ ``docker save`` archive (written in code) of :func:`busybox_layout`,
    named ``test/busybox:latest``: OCI layout + ``manifest.json`` + ``repositories``."""
    return builders.build_docker25_save(busybox_layout, builders.DEFAULT_TAG,
                                        fixture_dir / "busybox-docker25-save.tar",
                                        repo_tag=builders.TEST_REF)


@pytest.fixture(scope="session")
def shared_images() -> Path:
    """``../shared/images`` next to the repository (read-only real images, see its MANIFEST.txt)."""
    path = REPO_ROOT.parent / "shared" / "images"
    if not path.is_dir():
        pytest.skip(f"shared images not found at {path}")
    return path


# --------------------------------------------------------------------------- Debian bookworm


@pytest.fixture(scope="session")
def bookworm_layout(fixture_dir: Path) -> Path:
    """OCI layout (umoci, tag ``latest``) of ``debootstrap --variant=minbase bookworm``:
    one ~90 MB layer, device nodes kept, cmd ``/bin/bash``, no entrypoint, root.

    The debootstrap tree and the finished layout are cached between sessions in
    ``$XDG_CACHE_HOME/docker2aci-tests`` (``~/.cache/docker2aci-tests``); a cold build
    takes about a minute, a cached one a fraction of a second (fixtures/README.md).
    Skipped when debootstrap/umoci/zstd is missing, not root, or when nothing is cached
    and the Debian mirror does not answer; any other failure fails the test.
    """
    missing = debian.missing_bookworm_tools()
    if missing:
        pytest.skip(str(builders.ToolMissingError(missing)))
    if os.geteuid() != 0:
        pytest.skip("building the bookworm image needs root (debootstrap, device nodes)")
    try:
        return debian.build_bookworm_layout(fixture_dir / "bookworm-layout", cache_dir=BOOKWORM_CACHE)
    except debian.MirrorUnreachableError as exc:
        pytest.skip(f"bookworm image not cached and no network: {exc}")


@pytest.fixture(scope="session")
def bookworm_aci(bookworm_layout: Path, fixture_dir: Path) -> Path:
    """:func:`bookworm_layout` converted once per session by the project's converter
    (``docker2aci.pipeline.convert``), as a plain-tar ACI (``--compression none``: gzip
    of 200 MB costs seconds and nothing the tests look at depends on it)."""
    from docker2aci.aci import Compression
    from docker2aci.pipeline import ConvertOptions, convert

    out = fixture_dir / "bookworm-aci"
    [aci] = convert(f"oci:{bookworm_layout}:{builders.DEFAULT_TAG}",
                    ConvertOptions(output_dir=str(out), compression=Compression.NONE,
                                   cache_dir=str(fixture_dir / "docker2aci-cache"), use_cache=False))
    return Path(aci.path)


# --------------------------------------------------------------------------- secrets watch
# (tests/secretwatch.py): the session fails at its end when a test secret was seen in an output.


from secretwatch import RECORDERS, SecretWatch, recording_communicate, recording_readouterr

_WATCH_KEY = pytest.StashKey[SecretWatch]()
_PATCH_KEY = pytest.StashKey[pytest.MonkeyPatch]()


def _default_signal_actions() -> None:
    """Give SIGHUP, SIGINT and SIGQUIT their default actions if this process ignores them:
    a suite started with ``nohup``, or as a background job of a script (whose shell starts
    it with SIGINT and SIGQUIT ignored), passes that on to every process it starts, and the
    tests of what a run does on those signals failed (a run keeps a caller's ignored
    signals ignored, as ``nohup`` asks)."""
    for signum in (signal.SIGHUP, signal.SIGQUIT):
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config: pytest.Config) -> None:
    _default_signal_actions()
    watch = SecretWatch()
    config.stash[_WATCH_KEY] = watch
    patch = pytest.MonkeyPatch()
    patch.setattr(subprocess.Popen, "communicate", recording_communicate)
    patch.setattr(pytest.CaptureFixture, "readouterr", recording_readouterr)
    config.stash[_PATCH_KEY] = patch
    RECORDERS.insert(0, watch)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PATCH_KEY in config.stash:
        config.stash[_PATCH_KEY].undo()
    if _WATCH_KEY in config.stash and config.stash[_WATCH_KEY] in RECORDERS:
        RECORDERS.remove(config.stash[_WATCH_KEY])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if RECORDERS:
        RECORDERS[0].record_report(report)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when a secret was seen (the terminal summary says what and where)."""
    config = session.config
    if _WATCH_KEY not in config.stash or config.option.collectonly:
        return
    watch = config.stash[_WATCH_KEY]
    watch.add_live_secrets()
    if watch.check() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    watch = config.stash.get(_WATCH_KEY, None)
    if watch is None or not watch.stats:
        return
    if watch.findings:
        terminalreporter.section("secrets seen in outputs", red=True, bold=True)
        for finding in watch.findings:
            terminalreporter.line(f"SECRET LEAK: {finding}", red=True)
        terminalreporter.line(f"the session fails: {len(watch.findings)} leak(s); values are not printed. "
                              f"See SecretWatch in tests/secretwatch.py.", red=True)
    terminalreporter.line(f"secrets watch: {watch.stats}")


@pytest.fixture(scope="session", autouse=True)
def _secret_watch_base_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Have the session directory scanned at the end (see :class:`SecretWatch`)."""
    request.config.stash[_WATCH_KEY].base_dirs.append(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def secret_watch(request: pytest.FixtureRequest) -> SecretWatch:
    """The session's :class:`SecretWatch`: tests :meth:`~SecretWatch.add` the secrets they make."""
    return request.config.stash[_WATCH_KEY]


@pytest.fixture
def fresh_secret_watch() -> SecretWatch:
    """An empty :class:`SecretWatch`, apart from the session's (to test the watch itself)."""
    return SecretWatch()


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private system temporary directory, so leftovers can be counted."""
    d = tmp_path / "systmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``make(name, size)``: a tmpfs of ``size`` (``mount -t tmpfs -o size=SIZE``) mounted at
    ``tmp_path/name``; unmounted when the test ends."""
    mounted: list[Path] = []

    def make(name: str, size: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield make
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
