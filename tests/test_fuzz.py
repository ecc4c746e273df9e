"""Run every atheris fuzz target in ``tests/fuzz/`` for a bounded time (coverage-guided,
libFuzzer): a crash, a hang (``-timeout``), an out-of-memory (``-rss_limit_mb``), an
undocumented exception or a file written outside the target's temporary directory fails
the test, which prints the input that did it.

Each target runs ``DOCKER2ACI_FUZZ_SECONDS`` seconds (default :data:`SECONDS`; about
100 s for all targets together) in a subprocess, from its seeds (built by code) in a
fresh corpus. Deselect with ``-m "not fuzz"``; longer runs: ``scripts/fuzz.sh``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"
TARGETS = sorted(p.stem[len("fuzz_"):] for p in FUZZ_DIR.glob("fuzz_*.py"))
SECONDS = 12
"""Default fuzzing time per target (seconds)."""
TIMEOUT_PER_INPUT = 5
"""Seconds one input may run before it counts as a hang."""
RSS_LIMIT_MB = 1024
"""Memory (MiB) past which an input counts as a crash."""
_ARTIFACT = re.compile(r"^(crash|timeout|oom|leak)-")
_SHOWN_BYTES = 4096


def _seconds() -> int:
    return int(os.environ.get("DOCKER2ACI_FUZZ_SECONDS", SECONDS))


def _describe(artifact: Path) -> str:
    data = artifact.read_bytes()
    shown = repr(data[:_SHOWN_BYTES]) + (f" ... ({len(data)} bytes)" if len(data) > _SHOWN_BYTES else "")
    return f"{artifact.name} ({len(data)} bytes): {shown}"


@pytest.mark.fuzz
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    """The target survives its time budget: no crash, hang, OOM or stray file."""
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    corpus.mkdir()
    artifacts.mkdir()
    seconds = _seconds()
    cmd = [sys.executable, str(FUZZ_DIR / f"fuzz_{target}.py"), f"-max_total_time={seconds}",
           f"-timeout={TIMEOUT_PER_INPUT}", f"-rss_limit_mb={RSS_LIMIT_MB}", f"-artifact_prefix={artifacts}/",
           f"-seed={os.environ.get('DOCKER2ACI_FUZZ_SEED', '1')}",  # CI explores the same inputs each run
           "-print_final_stats=1", str(corpus)]
    tmp = tmp_path / "tmp"  # the target's sandbox and temporary files stay in tmp_path
    tmp.mkdir()
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, errors="replace",
                          env={**os.environ, "TMPDIR": str(tmp)}, timeout=seconds + 120, check=False)
    found = sorted(p for p in artifacts.iterdir() if _ARTIFACT.match(p.name))
    stats = [line for line in proc.stderr.splitlines()
             if "DONE" in line or line.startswith("stat::number_of_executed_units")]
    print(f"fuzz_{target}: {'; '.join(stats)}")
    if proc.returncode != 0 or found:
        tail = "\n".join(proc.stderr.splitlines()[-60:])
        inputs = "\n".join(_describe(p) for p in found) or "(no input saved)"
        reproduce = " ".join(cmd[:2] + [str(found[0])]) if found else ""
        pytest.fail(f"fuzz_{target} failed (exit status {proc.returncode})\n"
                    f"inputs:\n{inputs}\nreproduce: {reproduce}\n--- stderr (last lines) ---\n{tail}")
