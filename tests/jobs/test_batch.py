"""``docker2aci batch``: sources from a file (lines, JSON, YAML with per-item options),
converted by worker processes over one blob cache, a report per item; a failed item
never stops the others; the same batch on a Dask cluster (``distributed.LocalCluster``
with two worker processes) gives the same report and files."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jobs_helpers import MANY, TAGS, Key, Registry, blob_gets, caller_and_workers, cli, gpg_verify, load_report

from runner.extract import compute_image_id

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the busybox fixture needs root")

REPORT_KEYS = {"source", "status", "error", "acis", "bytes_fetched", "seconds", "manifest_digest"}


def batch(tmp_path: Path, text: str, *args: str, name: str = "batch.txt", check: int | None = 0,
          ) -> tuple[list[dict], subprocess.CompletedProcess[str]]:
    (tmp_path / name).write_text(text)
    report = tmp_path / "report.json"
    proc = cli("batch", tmp_path / name, "--output-dir", tmp_path / "out", "--cache-dir", tmp_path / "cache",
               "--insecure-allow-http", "--report", report, *args, check=check)
    return load_report(report), proc


def manifest_of(path: str) -> dict:
    out = subprocess.run(["actool", "cat-manifest", path], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_lines_with_a_failing_item(registry: Registry, busybox_docker_archive: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.tar"
    text = (f"# two tags of one repository, a docker save archive, a file that is not there\n"
            f"docker://{registry.host}/{MANY}:t01\n\n"
            f"docker://{registry.host}/{MANY}:t02\n"
            f"docker-archive:{busybox_docker_archive}\n"
            f"{missing}\n")
    mark = registry.log_mark()
    report, proc = batch(tmp_path, text, "--jobs", "2", check=1)
    assert [set(entry) for entry in report] == [REPORT_KEYS] * 4
    assert [(e["source"], e["status"]) for e in report] == [
        (f"docker://{registry.host}/{MANY}:t01", "ok"), (f"docker://{registry.host}/{MANY}:t02", "ok"),
        (f"docker-archive:{busybox_docker_archive}", "ok"), (str(missing), "failed")]
    assert str(missing) in report[3]["error"] and report[3]["acis"] == []
    out = tmp_path / "out"
    assert [[a["path"] for a in e["acis"]] for e in report[:3]] == [
        [str(out / "mirror-many-t01.aci")], [str(out / "mirror-many-t02.aci")], [str(out / "test-busybox-latest.aci")]]
    for entry in report[:3]:
        assert entry["acis"][0]["image_id"] == compute_image_id(entry["acis"][0]["path"])
        assert entry["error"] is None and entry["seconds"] > 0
    assert report[0]["bytes_fetched"] > 0 and report[2]["bytes_fetched"] == 0
    # the two tags share four layers: every blob was fetched once between them
    assert set(blob_gets(registry.requests_since(mark)).values()) == {1}
    # on a pipe: one tab-separated line per item
    lines = proc.stdout.splitlines()
    assert lines[0] == f"ok\tdocker://{registry.host}/{MANY}:t01\t{out / 'mirror-many-t01.aci'}"
    assert lines[3].startswith(f"failed\t{missing}\t")


def test_yaml_items_with_their_own_options(registry: Registry, signing_key: Key, tmp_path: Path) -> None:
    text = f"""\
- docker://{registry.host}/{MANY}:t03
- source: docker://{registry.host}/{MANY}:t04
  output: four-{{os}}-{{arch}}.aci
  name: example.com/batch/four
  platform: linux/amd64
  compression: none
  sign: {signing_key.secret}
- source: docker://{registry.host}/{MANY}:t03
"""
    report, _ = batch(tmp_path, text, name="items.yaml")
    assert [e["status"] for e in report] == ["ok", "ok", "skipped"]
    assert report[2]["error"] == "the same as item 1"
    four = report[1]["acis"][0]["path"]
    assert four == str(tmp_path / "out" / "four-linux-amd64.aci")
    assert manifest_of(four)["name"] == "example.com/batch/four"
    assert Path(four).read_bytes()[257:262] == b"ustar"          # --compression none: a plain tar
    gpg_verify(signing_key.public, four, tmp_path / "gnupg")
    assert not Path(report[0]["acis"][0]["path"] + ".asc").exists()


def test_a_password_in_a_batch_line_stays_in_the_batch_file(tmp_path: Path) -> None:
    """A batch line with ``user:password@`` was repeated whole in the report's ``source``,
    in ``--json`` output and in the summary (registry review); the error names it
    without the password too."""
    text = "docker://someone:s3cret-pw@127.0.0.1:9/team/app:1\nhttps://someone:s3cret-pw@127.0.0.1:9/team/app\n"
    report, proc = batch(tmp_path, text, check=1)
    assert [(e["source"], e["status"]) for e in report] == [
        ("docker://***@127.0.0.1:9/team/app:1", "failed"), ("https://***@127.0.0.1:9/team/app", "failed")]
    assert report[0]["error"] == ("***@127.0.0.1:9/team/app:1: invalid reference format: a reference cannot hold "
                                  "credentials (USER:PASSWORD@); use --creds USER:PASSWORD or docker login")
    assert report[1]["error"].startswith("https://***@127.0.0.1:9/team/app: no such file or directory")
    assert "s3cret-pw" not in proc.stdout + proc.stderr + json.dumps(report)


def test_json_list_from_stdin(busybox_docker_archive: Path, tmp_path: Path) -> None:
    items = [{"source": f"docker-archive:{busybox_docker_archive}", "output_dir": "sub", "output": "bb.aci"}]
    report_path = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "docker2aci", "batch", "-", "--output-dir", str(tmp_path / "out"),
                           "--report", str(report_path), "--json"], input=json.dumps(items), capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    report = load_report(report_path)
    assert json.loads(proc.stdout) == report
    assert report[0]["acis"][0]["path"] == str(tmp_path / "out" / "sub" / "bb.aci")


@pytest.mark.parametrize(("text", "name", "message"), [
    ('[{"source": "x.tar", "platfrom": "linux/amd64"}]', "b.json", "b.json: item 1: unknown option 'platfrom'"),
    ('[{"platform": "linux/amd64"}]', "b.json", "b.json: item 1: 'source' is missing"),
    ("- source: x.tar\n  compression_level: high\n", "b.yaml", "b.yaml: item 1: option 'compression_level' must be an integer, not 'high'"),
    ("- source: x.tar\n  output: ../x.aci\n", "b.yaml", "b.yaml: item 1: output file name '../x.aci'"),
    ("- source: x.tar\n  name: Not A Name\n", "b.yaml", "b.yaml: item 1: AC name 'Not A Name'"),
    ("- source: x.tar\n  output_dir: ../../elsewhere\n", "b.yaml", "b.yaml: item 1: output_dir '../../elsewhere' leads"),
    ("- source: x.tar\n  compression_level: 99\n", "b.yaml", "b.yaml: item 1: compression_level: gzip level 99"),
    ("- source: x.tar\n  platform: linux/\n", "b.yaml", "b.yaml: item 1: platform:"),
    # every platform's ACI named x.aci: it got past this check and failed with a warning that a
    # platform had failed (new-user trial)
    ("- source: x.tar\n  platform: all\n  output: x-{arch}.aci\n", "b.yaml",
     "b.yaml: item 1: output file name 'x-{arch}.aci' with platform all: every platform's ACI would get that "
     "name; put {os} and {arch} in it"),
    # `sign: ""` (a template's unset variable) converted the item unsigned, status ok (docs review)
    ("- source: x.tar\n  sign: ''\n", "b.yaml", "b.yaml: item 1: ConvertOptions.sign_key: expected a key file"),
    ("[1, 2", "b.json", "b.json: not valid JSON"),
    ("- a: [b\n", "b.yaml", "b.yaml: not valid YAML"),
])
def test_a_malformed_batch_file_is_refused_before_any_work(tmp_path: Path, text: str, name: str,
                                                           message: str) -> None:
    (tmp_path / name).write_text(text)
    proc = cli("batch", tmp_path / name, "--output-dir", tmp_path / "out", check=2)
    assert message in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
def test_a_batch_file_with_no_image_says_so(tmp_path: Path, text: str) -> None:
    """An empty batch file (a template not filled in) printed nothing at all and exited 0
    (new-user trial): a warning says so; --json still prints the empty report."""
    (tmp_path / "b.txt").write_text(text)
    proc = cli("batch", "--json", tmp_path / "b.txt", "--output-dir", tmp_path / "out", check=0)
    assert json.loads(proc.stdout) == []
    assert proc.stderr == f"WARNING: {tmp_path / 'b.txt'} lists no image: nothing to convert\n"


def test_every_mistake_of_a_batch_file_is_told_at_once(tmp_path: Path) -> None:
    """Only the first wrong item was named (the newcomer fixed it, ran again, and met the
    next): every item is checked, and each mistake is told, one a line."""
    text = ("- source: x.tar\n  compresion: none\n"
            "- source: y.tar\n"
            "- source: z.tar\n  compression_level: high\n"
            "- platform: linux/amd64\n")
    (tmp_path / "b.yaml").write_text(text)
    proc = cli("batch", tmp_path / "b.yaml", "--output-dir", tmp_path / "out", check=2)
    lines = proc.stderr.replace(f"{tmp_path}/", "").splitlines()
    assert lines[0].startswith("Error: b.yaml: item 1: unknown option 'compresion' (known: source, ")
    assert lines[1:] == [
        "  b.yaml: item 3: option 'compression_level' must be an integer, not 'high'",
        "  b.yaml: item 4: 'source' is missing or not a non-empty string"]
    (tmp_path / "c.yaml").write_text("- source: x.tar\n  output_dir: ../../a\n- source: y.tar\n  sign: ''\n")
    proc = cli("batch", tmp_path / "c.yaml", "--output-dir", tmp_path / "out", check=2)
    first, second = proc.stderr.replace(f"{tmp_path}/", "").splitlines()
    assert first.startswith("Error: c.yaml: item 1: output_dir '../../a' leads out of --output-dir ")
    assert second.startswith("  c.yaml: item 2: ConvertOptions.sign_key: expected a key file")
    # a malformed item and a wrong option value in the same file: the value was told only
    # once the malformed item was fixed (new-user trial)
    (tmp_path / "d.yaml").write_text("- source: x.tar\n  bogus: 1\n- source: y.tar\n  output_dir: ../../a\n")
    proc = cli("batch", tmp_path / "d.yaml", "--output-dir", tmp_path / "out", check=2)
    first, second = proc.stderr.replace(f"{tmp_path}/", "").splitlines()
    assert first.startswith("Error: d.yaml: item 1: unknown option 'bogus' (known: source, ")
    assert second.startswith("  d.yaml: item 2: output_dir '../../a' leads out of --output-dir ")
    assert not (tmp_path / "out").exists()


def test_dask_cluster_gives_the_same_report_and_files(registry: Registry, busybox_docker_archive: Path,
                                                      tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    text = "".join(f"docker://{registry.host}/{MANY}:{tag}\n" for tag in ("t05", "t06", "t07")) + \
        f"docker-archive:{busybox_docker_archive}\n{tmp_path / 'missing.tar'}\n"
    local_dir, dask_dir = tmp_path / "local", tmp_path / "dask"
    local_dir.mkdir()
    dask_dir.mkdir()
    local, _ = batch(local_dir, text, "--jobs", "2", check=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        on_dask, _ = batch(dask_dir, text, "--executor", "dask", "--scheduler", cluster.scheduler_address, check=1)

    def comparable(report: list[dict], root: Path) -> list[dict]:
        return [{**e, "seconds": None, "bytes_fetched": e["bytes_fetched"] > 0,
                 "error": e["error"] and e["error"].replace(str(root), "ROOT"),
                 "acis": [{**a, "path": os.path.relpath(a["path"], root)} for a in e["acis"]]} for e in report]

    assert comparable(on_dask, dask_dir) == comparable(local, local_dir)
    assert [e["status"] for e in on_dask] == ["ok"] * 4 + ["failed"]
    files = sorted(p.name for p in (dask_dir / "out").iterdir())
    assert files == sorted(p.name for p in (local_dir / "out").iterdir())
    for name in files:
        assert (dask_dir / "out" / name).read_bytes() == (local_dir / "out" / name).read_bytes()


def test_dask_relative_paths_are_the_callers(registry: Registry, busybox_oci_archive: Path,
                                             busybox_docker_archive: Path, signing_key: Key, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths given to ``--executor dask`` are the caller's, as with local workers,
    whatever the workers' working directory: ``--output-dir dk`` went to ``<worker cwd>/dk``
    and ``oci-archive:demo.tar`` was 'no such file or directory' (new-user review). The
    report names each source as typed."""
    distributed = pytest.importorskip("distributed")
    caller, workers = caller_and_workers(tmp_path, signing_key)
    (caller / "demo.tar").symlink_to(busybox_oci_archive)
    (caller / "bb.tar").symlink_to(busybox_docker_archive)
    (workers / "missing.tar").symlink_to(busybox_oci_archive)  # in the workers' directory only
    (caller / "batch.yaml").write_text(f"""\
- oci-archive:demo.tar
- source: docker-archive:bb.tar
  output_dir: sub
  output: bb.aci
- docker://{registry.host}/{MANY}:t08
- oci-archive:missing.tar
""")
    monkeypatch.chdir(workers)  # the worker processes start here
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        proc = cli("batch", "batch.yaml", "--executor", "dask", "--scheduler", cluster.scheduler_address,
                   "--output-dir", "dk", "--cache-dir", "cache", "--tmp-dir", "tmp", "--sign", "keys/release.sec.asc",
                   "--insecure-allow-http", "--report", "report.json", cwd=caller, check=1)
    report = load_report(caller / "report.json")
    assert [(e["source"], e["status"]) for e in report] == [
        ("oci-archive:demo.tar", "ok"), ("docker-archive:bb.tar", "ok"),
        (f"docker://{registry.host}/{MANY}:t08", "ok"), ("oci-archive:missing.tar", "failed")], proc.stderr
    # the error too names the source as typed, as a local worker does
    assert report[3]["error"].startswith("oci-archive:missing.tar: no such file or directory")
    out = caller / "dk"
    assert [[a["path"] for a in e["acis"]] for e in report] == [
        [str(out / "test-busybox-latest.aci")], [str(out / "sub" / "bb.aci")], [str(out / "mirror-many-t08.aci")], []]
    for entry in report[:3]:
        path = Path(entry["acis"][0]["path"])
        assert entry["acis"][0]["image_id"] == compute_image_id(str(path))
        assert Path(f"{path}.asc").is_file()
    assert (caller / "cache").is_dir()
    assert sorted(p.name for p in workers.iterdir()) == ["missing.tar"]  # nothing written where the workers run


def test_what_a_dask_job_is_sent_with(tmp_path: Path) -> None:
    """Only relative local paths change (:func:`docker2aci.jobs._for_cluster`): registry and
    engine sources, absolute paths, a bare name no file starts and a key's fingerprint stay."""
    from docker2aci.jobs import Job, _for_cluster
    from docker2aci.pipeline import ConvertOptions

    (tmp_path / "a.tar").touch()
    (tmp_path / "lay").mkdir()
    cwd = str(tmp_path)
    sent = {source: _for_cluster(Job(source, ConvertOptions()), cwd).source for source in (
        "docker://busybox:latest", "docker-daemon:busybox:1", "busybox:latest", "missing.tar", "/abs/x.tar",
        "oci-archive:", "oci-archive:a.tar:v1", "oci:lay:tag", "docker-archive:a.tar:library/x:1", "a.tar:v1",
        "oci-archive:nothere.tar")}
    assert sent == {
        "docker://busybox:latest": "docker://busybox:latest", "docker-daemon:busybox:1": "docker-daemon:busybox:1",
        "busybox:latest": "busybox:latest", "missing.tar": "missing.tar", "/abs/x.tar": "/abs/x.tar",
        "oci-archive:": "oci-archive:", "oci-archive:a.tar:v1": f"oci-archive:{cwd}/a.tar:v1",
        "oci:lay:tag": f"oci:{cwd}/lay:tag",
        "docker-archive:a.tar:library/x:1": f"docker-archive:{cwd}/a.tar:library/x:1",
        "a.tar:v1": f"{cwd}/a.tar:v1", "oci-archive:nothere.tar": f"oci-archive:{cwd}/nothere.tar"}
    options = _for_cluster(Job("x", ConvertOptions(sign_key="0xDEADBEEFDEADBEEF", cert_dir="certs", cache_dir="/c",
                                                   sign_passphrase_file="keys/../pw")), cwd).options
    assert (options.output_dir, options.cert_dir, options.cache_dir, options.sign_passphrase_file, options.tmp_dir,
            options.sign_key) == (cwd, f"{cwd}/certs", "/c", f"{cwd}/pw", None, "0xDEADBEEFDEADBEEF")
    assert _for_cluster(Job("x", ConvertOptions(sign_key="k.asc")), cwd).options.sign_key == f"{cwd}/k.asc"


def test_dask_without_a_scheduler_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("x.tar\n")
    proc = cli("batch", tmp_path / "b.txt", "--executor", "dask", check=2)
    assert "--scheduler" in proc.stderr


def test_a_scheduler_without_dask_is_a_usage_error(tmp_path: Path) -> None:
    """``--scheduler`` without ``--executor dask`` was ignored: the items ran in local workers."""
    (tmp_path / "b.txt").write_text("x.tar\n")
    proc = cli("batch", tmp_path / "b.txt", "--scheduler", "tcp://127.0.0.1:8786", check=2)
    assert (proc.stdout, proc.stderr) == ("", "Error: --scheduler tcp://127.0.0.1:8786: only with --executor dask\n")


def test_two_items_that_write_one_file(busybox_docker_archive: Path, tmp_path: Path) -> None:
    """The same image twice at two compressions: one file name; the second item is failed."""
    text = f"- docker-archive:{busybox_docker_archive}\n- source: docker-archive:{busybox_docker_archive}\n" \
           f"  compression: none\n"
    report, _ = batch(tmp_path, text, name="b.yaml", check=1)
    assert [e["status"] for e in report] == ["ok", "failed"]
    source = f"docker-archive:{busybox_docker_archive} (linux/amd64)"
    assert report[1]["error"] == (f"{source} would be written to {tmp_path / 'out' / 'test-busybox-latest.aci'}, "
                                  f"which item 1 writes from {source}: give one an 'output' or 'output_dir' of "
                                  f"its own")
    [aci] = report[0]["acis"]
    assert report[1]["acis"] == []  # it listed item 1's file as its own (a new user's find)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [Path(aci["path"]).name]


def test_claims_need_a_claimant(busybox_docker_archive: Path, tmp_path: Path) -> None:
    """A claims directory without ``claims_as`` would make every conversion the same
    claimant, and the check silently nothing: a usage error, before any work (the
    signing key and the source, both missing here, are not opened)."""
    from docker2aci.errors import UsageError
    from docker2aci.pipeline import ConvertOptions, convert

    options = ConvertOptions(output_dir=str(tmp_path / "out"), claims_dir=str(tmp_path))
    with pytest.raises(UsageError, match="claims_dir needs claims_as"):
        convert(f"docker-archive:{busybox_docker_archive}", options)
    with pytest.raises(UsageError, match="claims_dir needs claims_as"):
        convert(f"docker-archive:{tmp_path / 'missing.tar'}",
                dataclasses.replace(options, sign_key=str(tmp_path / "missing.key")))
    assert not (tmp_path / "out").exists()


def test_a_failed_item_leaves_its_file_to_the_next(tmp_path: Path) -> None:
    """An item that fails after claiming its file wrote nothing: a later item given the
    same file writes it (the claim stayed, and the later one was refused "which item 1
    writes", though item 1 wrote nothing)."""
    import tarfile

    from services import SHARED_IMAGES

    good = SHARED_IMAGES / "oci-archive.tar"
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if data is not None and member.size > 100_000:  # the layer: one byte changed, its digest wrong
                data = data[:50_000] + bytes([data[50_000] ^ 1]) + data[50_001:]
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    text = "".join(f"- source: oci-archive:{path}\n  output: same.aci\n" for path in (bad, good))
    report, _ = batch(tmp_path, text, name="b.yaml", check=1)
    assert [e["status"] for e in report] == ["failed", "ok"], report
    assert "digest" in report[0]["error"] and report[0]["acis"] == []
    path = tmp_path / "out" / "same.aci"
    assert report[1]["acis"] == [{"path": str(path), "image_id": compute_image_id(str(path))}]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_item_never_overwrites_the_file_of_another(registry: Registry, tmp_path: Path, jobs: str) -> None:
    """Two images given one file name: the file holds the image the report calls ``ok``
    (the second item used to overwrite the first's file, then be called failed, so the
    report gave the first's image ID for the second's bytes)."""
    text = "".join(f"- source: docker://{registry.host}/{MANY}:{tag}\n  output: same.aci\n" for tag in ("t01", "t02"))
    report, _ = batch(tmp_path, text, "--jobs", jobs, name="b.yaml", check=1)
    assert sorted(e["status"] for e in report) == ["failed", "ok"]
    [ok] = [e for e in report if e["status"] == "ok"]
    [failed] = [e for e in report if e["status"] == "failed"]
    path = tmp_path / "out" / "same.aci"
    assert ok["acis"] == [{"path": str(path), "image_id": compute_image_id(str(path))}]
    assert failed["acis"] == []
    first = report.index(ok) + 1
    assert failed["error"] == (f"{failed['source']} (linux/amd64) would be written to {path}, which item {first} "
                               f"writes from {ok['source']} (linux/amd64): give one an 'output' or 'output_dir' "
                               f"of its own")
    tag = ok["source"].rsplit(":", 1)[1]
    assert subprocess.run(["tar", "-xzOf", str(path), "rootfs/etc/tag"], capture_output=True, text=True,
                          check=True).stdout == f"{tag}\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["same.aci"]


@pytest.mark.parametrize(("where", "problem"), [
    ("missing/report.json", "there is no directory {tmp}/missing"),
    ("out", "is a directory"),
])
def test_a_report_that_cannot_be_written_is_refused_before_any_work(busybox_docker_archive: Path, tmp_path: Path,
                                                                     where: str, problem: str) -> None:
    """It was found only once every item had been converted (a new user's find)."""
    (tmp_path / "out").mkdir()
    (tmp_path / "b.txt").write_text(f"docker-archive:{busybox_docker_archive}\n")
    report = tmp_path / where
    proc = cli("batch", tmp_path / "b.txt", "--output-dir", tmp_path / "out", "--report", report, check=2)
    assert f"Error: --report {report}: {problem.format(tmp=tmp_path)}" in proc.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_a_report_to_a_fifo_is_written_into_it_not_over_it(busybox_docker_archive: Path, tmp_path: Path) -> None:
    """A report path that is a device or a FIFO was replaced by a regular file (the atomic
    rename): as root, ``--report /dev/full`` replaced the device (review). It is written
    to, as a shell's ``>`` would."""
    (tmp_path / "b.txt").write_text(f"docker-archive:{busybox_docker_archive}\n")
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    try:
        cli("batch", tmp_path / "b.txt", "--output-dir", tmp_path / "out", "--report", fifo)
        read, _ = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert [item["status"] for item in json.loads(read)] == ["ok"]
    assert fifo.is_fifo()


def test_a_report_to_a_link_to_stdout_is_written_through_it(busybox_docker_archive: Path, tmp_path: Path) -> None:
    """``--report /dev/stdout`` with the output sent to a file: the link itself was
    replaced by the report (as root, ``/dev/stdout``), and the file got nothing (review).
    Here a link of our own to ``/proc/self/fd/1`` stands for ``/dev/stdout``: the report
    goes through the process's stdout, before the summary."""
    (tmp_path / "b.txt").write_text(f"docker-archive:{busybox_docker_archive}\n")
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    with (tmp_path / "out.txt").open("w") as out:
        subprocess.run([sys.executable, "-m", "docker2aci", "batch", str(tmp_path / "b.txt"), "--output-dir",
                        str(tmp_path / "acis"), "--report", str(link)], stdout=out, check=True, timeout=300)
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    report, summary = (tmp_path / "out.txt").read_text().rsplit("]\n", 1)
    assert [item["status"] for item in json.loads(report + "]")] == ["ok"]
    assert summary.startswith(f"ok\tdocker-archive:{busybox_docker_archive}\t")


def test_only_devices_fifos_and_descriptors_are_written_through(tmp_path: Path) -> None:
    """Every path under ``/dev`` counted: a report in ``/dev/shm`` was refused, or appended
    to an old one (review). A regular file there is replaced as anywhere else."""
    from docker2aci.atomic import is_special, write_small_file

    assert [is_special(p) for p in ("/dev/stdout", "/proc/self/fd/1", "/dev/fd/1", "/dev/null")] == [True] * 4
    shm = Path("/dev/shm") / f"docker2aci-test-{os.getpid()}.json"
    if not shm.parent.is_dir():
        pytest.skip("no /dev/shm")
    try:
        for text in (b"first, longer\n", b"second\n"):
            assert not is_special(str(shm))
            write_small_file(str(shm), text, 0o600)
        assert shm.read_bytes() == b"second\n" and (shm.stat().st_mode & 0o777) == 0o600
    finally:
        shm.unlink(missing_ok=True)


def test_a_worker_that_dies_does_not_fail_the_others(registry: Registry, tmp_path: Path) -> None:
    """SIGKILL to one worker process mid-batch (as the OOM killer would): the jobs it and
    its pool had not finished go to new workers; every item ends ok."""
    import signal
    import time

    (tmp_path / "b.txt").write_text("".join(f"docker://{registry.host}/{MANY}:{tag}\n" for tag in TAGS))
    report = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "docker2aci", "batch", str(tmp_path / "b.txt"), "--jobs", "2",
                             "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                             "--insecure-allow-http", "--report", str(report)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        if (tmp_path / "out").exists() and any((tmp_path / "out").glob("*.aci")):
            workers = _descendants(proc.pid)[1:]  # the forkserver, then the workers it forked
            if len(workers) >= 2:
                killed = workers[-1]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.01)
    assert proc.wait(120) == 0
    assert killed is not None, "the batch ended before a worker could be killed"
    assert [e["status"] for e in load_report(report)] == ["ok"] * len(TAGS)


def _descendants(pid: int) -> list[int]:
    """``pid``'s descendant processes, parents before children (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in sorted(children.get(todo.pop(0), [])):
            out.append(child)
            todo.append(child)
    return out


def test_workers_warn_as_the_run_does(registry: Registry, tmp_path: Path) -> None:
    """With ``--jobs 2`` a worker's warning came out bare (``127.0.0.1:PORT: using plain
    http ...``), without ``WARNING:``: a worker process had no logging set up (new-user
    review). Workers now log as the run does."""
    text = "".join(f"docker://{registry.host}/{MANY}:{tag}\n" for tag in ("t01", "t02"))
    report, proc = batch(tmp_path, text, "--jobs", "2")
    assert [e["status"] for e in report] == ["ok", "ok"]
    plain_http = [line for line in proc.stderr.splitlines() if "using plain http" in line]
    assert plain_http and all(line == f"WARNING: {registry.host}: using plain http (--insecure-allow-http)"
                              for line in plain_http), proc.stderr


@pytest.mark.parametrize(("name", "text"), [
    ("b.txt", "oci-archive:x.tar\r\n# note\r\nb.tar\r\n"),
    ("b.json", '["oci-archive:x.tar", "b.tar"]'),
])
def test_a_byte_order_mark_is_no_part_of_the_first_item(tmp_path: Path, name: str, text: str) -> None:
    """A batch file saved by a Windows editor ("UTF-8 with BOM", CRLF lines): the BOM was
    read into the first item's source (``\\ufeffoci-archive:x.tar: no such file or
    directory``), and a JSON list was refused ("Unexpected UTF-8 BOM")."""
    from docker2aci.batchfile import read_batch

    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert [item.source for item in read_batch(str(tmp_path / name))] == ["oci-archive:x.tar", "b.tar"]


def test_an_item_given_again_with_its_keys_in_another_order_is_skipped(tmp_path: Path) -> None:
    """An item given twice is skipped; given again with its keys in another order, it was
    converted again, and failed as a second item writing the first one's file (exit
    status 1)."""
    from services import SHARED_IMAGES

    source = f"oci-archive:{SHARED_IMAGES / 'oci-archive.tar'}"
    text = (f"- source: {source}\n  image: test/busybox:latest\n  output_dir: sub\n"
            f"- output_dir: sub\n  image: test/busybox:latest\n  source: {source}\n")
    report, _ = batch(tmp_path, text, name="b.yaml")
    assert [(e["status"], e["error"]) for e in report] == [("ok", None), ("skipped", "the same as item 1")]
    assert [Path(a["path"]).relative_to(tmp_path) for a in report[0]["acis"]] == [
        Path("out/sub/test-busybox-latest.aci")]
