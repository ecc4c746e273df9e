"""Helpers of the batch and mirror tests: a real ``docker-registry`` with
its access log on, holding repositories built with umoci from the busybox fixture.

* ``mirror/many``: 20 tags ``t01``..``t20``; every tag is the 4-layer busybox base (shared
  by all) plus one small layer of its own (``umoci raw add-layer`` of a tar made by GNU
  tar), so each tag has its own manifest and config and shares four layer blobs.
* Tests that move or delete tags push their own repositories (:func:`push_tags`), so the
  20-tag repository never changes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from services import RunningRegistry, push, require_tools

MANY = "mirror/many"
TAGS = [f"t{i:02d}" for i in range(1, 21)]
_REQUEST = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[\d.]+"')


@dataclass(frozen=True)
class Registry:
    """The running registry and the layout its images came from."""

    running: RunningRegistry
    layout: Path

    @property
    def host(self) -> str:
        return self.running.host

    def log_mark(self) -> int:
        """The access log's current length: give it to :meth:`requests_since`."""
        return self.running.log_path.stat().st_size

    def requests_since(self, mark: int) -> list[tuple[str, str]]:
        """``(method, path)`` of every request logged after ``mark``."""
        with self.running.log_path.open("rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return [(m.group(1), m.group(2)) for m in _REQUEST.finditer(text)]


def blob_gets(requests: Sequence[tuple[str, str]]) -> Counter[str]:
    """How many times each blob was fetched (GET /v2/<name>/blobs/<digest>)."""
    return Counter(path.rsplit("/", 1)[1] for method, path in requests
                   if method == "GET" and "/blobs/" in path)


def _tag_layer(work: Path, tag: str) -> Path:
    """A one-file layer tar made by GNU tar: ``/etc/tag`` holding the tag."""
    root = work / f"layer-{tag}"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "tag").write_text(f"{tag}\n")
    os.utime(root / "etc" / "tag", (1_600_000_000, 1_600_000_000))
    tar = work / f"layer-{tag}.tar"
    subprocess.run(["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", str(root), "-cf", str(tar), "etc/tag"],
                   check=True)
    return tar


def build_tags(base_layout: Path, work: Path, tags: Sequence[str]) -> Path:
    """A copy of ``base_layout`` with one image per tag: the base plus the tag's layer."""
    require_tools("umoci")
    layout = work / "layout"
    shutil.copytree(base_layout, layout)
    for tag in tags:
        subprocess.run(["umoci", "tag", "--image", f"{layout}:latest", tag], check=True, capture_output=True)
        subprocess.run(["umoci", "raw", "add-layer", "--image", f"{layout}:{tag}", str(_tag_layer(work, tag))],
                       check=True, capture_output=True)
    return layout


def push_tags(layout: Path, registry: RunningRegistry, repository: str, tags: dict[str, str]) -> None:
    """Push ``layout:SRC`` as ``repository:DEST`` for each DEST → SRC of ``tags``, one at a
    time (concurrent pushes of shared blobs make docker-registry answer 500 now and then)."""
    for dest, src in tags.items():
        push(f"oci:{layout}:{src}", registry, f"{repository}:{dest}")


@dataclass(frozen=True)
class Key:
    """A signing key made for these tests."""

    public: Path
    secret: Path
    fingerprint: str


def cli(*argv: str | os.PathLike[str], check: int | None = 0, env: dict[str, str] | None = None,
        timeout: float = 300, cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``docker2aci ARGV`` as a real process (in ``cwd``, default this one's); assert its
    exit status when ``check`` is set."""
    proc = subprocess.run([sys.executable, "-m", "docker2aci", *map(str, argv)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, stdin=subprocess.DEVNULL, check=False,
                          cwd=cwd)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def load_report(path: Path) -> list[dict[str, object]]:
    return json.loads(path.read_text())


def gpg_verify(public_key: Path, path: str | os.PathLike[str], home: Path) -> None:
    """``gpg --verify PATH.asc PATH`` with only ``public_key`` in a new gpg home (fails the test if gpg refuses);
    the gpg-agent gpg starts there is stopped before this returns."""
    home.mkdir(mode=0o700)
    try:
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import", str(public_key)], check=True,
                       capture_output=True)
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--verify", f"{path}.asc", str(path)], check=True,
                       capture_output=True)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


def caller_and_workers(tmp_path: Path, signing_key: Key) -> tuple[Path, Path]:
    """Two directories for a Dask run with relative paths: the caller's (holding ``tmp/``
    and ``keys/release.sec.asc``) and the workers' working directory (empty)."""
    caller, workers = tmp_path / "caller", tmp_path / "workers"
    for directory in (caller, workers, caller / "tmp", caller / "keys"):
        directory.mkdir()
    (caller / "keys" / "release.sec.asc").write_bytes(signing_key.secret.read_bytes())
    return caller, workers

