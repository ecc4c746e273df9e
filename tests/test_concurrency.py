"""Concurrency: 8 real ``docker2aci`` processes converting overlapping images from one
registry into one cache directory and one output directory at the same time.

The registry holds four tags that share the 4-layer busybox base and have one layer each
of their own. Each process converts a different subset (two convert the same single
image, the others run ``batch`` over 2-3 tags), so every shared blob and every image is
wanted by several processes at once. Afterwards: every process succeeded, every ACI is
whole and valid (its image ID is the sha512 of its tar, ``actool validate`` accepts it, it
is identical to a conversion made alone), the cache holds only whole entries, and the
registry's access log shows each blob fetched exactly once.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from crashkit import CLI_TIMEOUT, check_cache, cli_env, run_cli, sha256_file, visible_acis
from jobs.jobs_helpers import Registry, blob_gets, build_tags, push_tags
from services import REGISTRY_BIN, SKOPEO_BIN, require_tools, run_registry

TAGS = ["c1", "c2", "c3", "c4"]
REPO = "conc/img"
SUBSETS = [["c1"], ["c1"], ["c1", "c2"], ["c2", "c3"], ["c3", "c4"], ["c4", "c1"], ["c2", "c3", "c4"],
           ["c1", "c2", "c3", "c4"]]
"""What each of the 8 processes converts: every tag is wanted by 4-5 processes."""


@pytest.fixture(scope="module")
def conc_registry(busybox_basic_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    require_tools(REGISTRY_BIN, SKOPEO_BIN)
    layout = build_tags(busybox_basic_layout, tmp_path_factory.mktemp("conc-tags"), TAGS)
    with run_registry(tmp_path_factory.mktemp("conc-registry"), access_log=True) as running:
        push_tags(layout, running, REPO, {t: t for t in TAGS})
        yield Registry(running, layout)


def _image_id(aci: Path) -> str:
    """The appc image ID: sha512 of the ACI's tar (after gzip, when compressed)."""
    h = hashlib.sha512()
    with aci.open("rb") as raw:
        magic = raw.read(2)
    with (gzip.open(aci, "rb") if magic == b"\x1f\x8b" else aci.open("rb")) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"sha512-{h.hexdigest()}"


def _argv(i: int, subset: list[str], host: str, tmp: Path, out: Path, cache: Path) -> list[str]:
    common = ["--insecure-allow-http", "--json", "--output-dir", str(out), "--cache-dir", str(cache)]
    if len(subset) == 1:
        return [*common, f"docker://{host}/{REPO}:{subset[0]}"]
    batch = tmp / f"batch{i}.txt"
    batch.write_text("".join(f"docker://{host}/{REPO}:{t}\n" for t in subset))
    return ["batch", str(batch), *common]


def test_eight_processes_share_cache_and_output(conc_registry: Registry, tmp_path: Path) -> None:
    host = conc_registry.host
    out, cache = tmp_path / "out", tmp_path / "cache"
    mark = conc_registry.log_mark()
    procs = [subprocess.Popen([sys.executable, "-m", "docker2aci", *_argv(i, s, host, tmp_path, out, cache)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                              stdin=subprocess.DEVNULL)
             for i, s in enumerate(SUBSETS)]
    results = [(p, *p.communicate(timeout=CLI_TIMEOUT)) for p in procs]
    for proc, stdout, stderr in results:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    requests = conc_registry.requests_since(mark)

    gets = blob_gets(requests)
    assert gets, requests
    assert all(n == 1 for n in gets.values()), f"blobs fetched more than once: {gets}"
    # 4 tags: 4 shared layers + 4 own layers + 4 configs, each fetched once.
    assert len(gets) == 12, gets

    reported: dict[str, str] = {}  # ACI file name -> image ID the processes printed
    for _, stdout, _ in results:
        text = stdout.strip()
        items = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]
        for item in items:
            for aci in item.get("acis", [item]):
                assert reported.setdefault(Path(aci["path"]).name, aci["image_id"]) == aci["image_id"]
    acis = visible_acis(out)
    assert len(acis) == len(TAGS), acis
    assert set(reported) == set(acis), (reported, acis)
    actool = shutil.which("actool")
    for name in acis:
        image_id = _image_id(out / name)
        assert image_id == reported[name], f"{name}: image ID does not match its content"
        if actool:
            done = subprocess.run([actool, "validate", str(out / name)], capture_output=True, text=True, check=False)
            assert done.returncode == 0, f"actool validate {name}: {done.stdout}{done.stderr}"
    report = check_cache(cache)
    assert report.conversions == len(TAGS) and not report.temporaries, report

    # The same conversions made alone, in a fresh cache, are byte-identical (two of them: time).
    alone = tmp_path / "alone"
    for tag in (TAGS[0], TAGS[-1]):
        run_cli("--insecure-allow-http", "--output-dir", alone, "--cache-dir", tmp_path / "alone-cache",
                f"docker://{host}/{REPO}:{tag}")
    assert {name: sha256_file(alone / name) for name in visible_acis(alone)} == \
        {name: digest for name, digest in acis.items() if name in visible_acis(alone)}
    assert len(visible_acis(alone)) == 2
