"""Fixtures for the runner tests: build busybox ACIs, run them in a fresh Python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from runner_aci_helpers import (
    PROJECT_ROOT,
    BuildAci,
    Entry,
    RunApp,
    busybox_entries,
    manifest,
    write_aci,
)

if str(PROJECT_ROOT) not in sys.path:  # the project is not installed in the venv
    sys.path.insert(0, str(PROJECT_ROOT))


@pytest.fixture(autouse=True)
def _private_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache root, so the tree store and pods of its runs (in this
    process or a child) live in its temporary directory, never in ``~/.cache``."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "docker2aci"


@pytest.fixture
def build_aci(tmp_path: Path) -> BuildAci:
    """Factory: ``build_aci(app, extra=[...], with_etc=True, annotations=None) -> path``."""
    counter = iter(range(1_000_000))

    def build(
        app: Mapping[str, Any] | None,
        *,
        extra: Sequence[Entry] = (),
        with_etc: bool = True,
        annotations: Mapping[str, str] | None = None,
    ) -> Path:
        entries = [*busybox_entries(with_etc), *extra]
        doc = manifest(app, annotations=annotations)
        # plain tar: gzip of busybox costs more than the run (compressions: extract tests)
        return write_aci(tmp_path / f"image-{next(counter)}.aci", entries, doc, compression="")

    return build


_RUN_SNIPPET = (
    "import json, sys, runner; o = json.loads(sys.argv[1]); "
    "sys.exit(runner.run_aci(o['aci'], o['args'], exec_override=o['exec'], work_dir=o['work'],"
    " insecure_options={'image'}, stage='fly'))"
)


@pytest.fixture
def run_app(tmp_path: Path) -> RunApp:
    """Factory: run an ACI with ``runner.run_aci`` in a fresh Python; capture its output."""
    work = tmp_path / "work"
    work.mkdir()

    def run(
        aci: Path,
        args: Sequence[str] | None = None,
        exec_override: Sequence[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        options = {"aci": str(aci), "args": args, "exec": exec_override, "work": str(work)}
        result = subprocess.run(
            [sys.executable, "-c", _RUN_SNIPPET, json.dumps(options)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert os.listdir(work) == [], "the rendered tree was not removed"
        return result

    return run


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip tests marked ``root`` unless running as root."""
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip("needs root")
