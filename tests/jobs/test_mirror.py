"""``docker2aci mirror`` against a real docker-registry (access log on): shared blobs
fetched once, unchanged tags cost one manifest request, moved tags converted again,
vanished tags reported and pruned, and a run killed with SIGKILL finished by the next
into the same tree as an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from crashkit import reaped
from jobs_helpers import (MANY, TAGS, Key, Registry, blob_gets, build_tags, caller_and_workers, cli, gpg_verify,
                          load_report, push_tags)
from services import die_with_pytest, run_registry

from docker2aci.mirror import STATE_DIR
from runner.extract import compute_image_id as image_id_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the busybox fixture needs root")

PREFIX = "127.0.0.1/mirror"


def mirror(registry: Registry, tree: Path, cache: Path, *args: str, repo: str = MANY, check: int | None = 0,
           ) -> tuple[list[dict[str, object]], subprocess.CompletedProcess[str]]:
    report = tree.parent / f"{tree.name}-report.json"
    proc = cli("mirror", f"{registry.host}/{repo}", "--output-dir", tree, "--cache-dir", cache,
               "--insecure-allow-http", "--name-prefix", PREFIX, "--report", report, *args, check=check)
    return load_report(report), proc


def tree_files(tree: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file of the tree but the mirror's lock."""
    out = {}
    for path in sorted(tree.rglob("*")):
        if path.is_file() and path.name != "lock":
            out[str(path.relative_to(tree))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def aci_name(repo: str, tag: str) -> str:
    return f"mirror/{repo}-{tag}-linux-amd64.aci"


@pytest.fixture(scope="module")
def first_run(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list, list]:
    """``mirror/many`` mirrored once with two workers: (tree, cache, report, requests)."""
    work = tmp_path_factory.mktemp("mirror-first")
    mark = registry.log_mark()
    report, _ = mirror(registry, work / "tree", work / "cache", "--jobs", "2")
    return work / "tree", work / "cache", report, registry.requests_since(mark)


def test_every_tag_is_converted_and_each_shared_blob_fetched_once(first_run: tuple, registry: Registry) -> None:
    tree, _, report, requests = first_run
    assert [(r["tag"], r["status"]) for r in report] == [(tag, "ok") for tag in TAGS]
    for entry in report:
        [aci] = entry["acis"]
        assert aci["path"] == str(tree / aci_name(MANY, entry["tag"]))
        assert aci["image_id"] == image_id_of(aci["path"])
        assert entry["manifest_digest"].startswith("sha256:")
        assert entry["repository"] == f"{registry.host}/{MANY}"
    gets = blob_gets(requests)
    # 4 shared base layers + per tag (its layer + its config): each blob exactly once
    assert len(gets) == 4 + 2 * len(TAGS)
    assert set(gets.values()) == {1}
    assert sum(r["bytes_fetched"] for r in report) > 0


def test_the_tree_is_a_discovery_tree(first_run: tuple) -> None:
    tree = first_run[0]
    names = {str(p.relative_to(tree)) for p in tree.rglob("*.aci")}
    assert names == {aci_name(MANY, tag) for tag in TAGS}
    page = (tree / "mirror" / "mirror" / "many" / "index.html").read_text()
    assert (f'<meta name="ac-discovery" content="{PREFIX}/mirror/many '
            f'https://127.0.0.1/mirror/mirror/many-{{version}}-{{os}}-{{arch}}.{{ext}}">') in page
    manifest = json.loads(subprocess.run(["actool", "cat-manifest", str(tree / aci_name(MANY, "t05"))],
                                         capture_output=True, text=True, check=True).stdout)
    assert manifest["name"] == f"{PREFIX}/mirror/many"
    assert {label["name"]: label["value"] for label in manifest["labels"]} == {
        "version": "t05", "os": "linux", "arch": "amd64"}
    for path in tree.rglob("*.aci"):
        subprocess.run(["actool", "validate", str(path)], check=True, capture_output=True)


def test_a_second_run_only_asks_for_manifests(first_run: tuple, registry: Registry) -> None:
    tree, cache, _, _ = first_run
    before = tree_files(tree)
    mark = registry.log_mark()
    report, _ = mirror(registry, tree, cache, "--jobs", "2")
    requests = registry.requests_since(mark)
    assert [r["status"] for r in report] == ["skipped"] * len(TAGS)
    # a HEAD per tag, no GET: Docker Hub counts manifest GETs against its pull rate limit
    manifests = sorted((method, path) for method, path in requests if "/manifests/" in path)
    assert manifests == sorted(("HEAD", f"/v2/{MANY}/manifests/{tag}") for tag in TAGS)
    others = [(m, p) for m, p in requests if "/manifests/" not in p]
    assert others == [("GET", "/v2/"), ("GET", f"/v2/{MANY}/tags/list")]
    assert tree_files(tree) == before


def test_a_moved_tag_is_converted_again_and_a_vanished_one_reported_then_pruned(
        registry: Registry, tmp_path: Path) -> None:
    repo = "mirror/moving"
    push_tags(registry.layout, registry.running, repo, {"a": "t01", "b": "t02", "c": "t03"})
    tree, cache = tmp_path / "tree", tmp_path / "cache"
    report, _ = mirror(registry, tree, cache, repo=repo)
    assert [(r["tag"], r["status"]) for r in report] == [("a", "ok"), ("b", "ok"), ("c", "ok")]
    old_b = image_id_of(str(tree / aci_name(repo, "b")))

    push_tags(registry.layout, registry.running, repo, {"b": "t04"})   # b moves
    subprocess.run(["skopeo", "delete", "--tls-verify=false", f"docker://{registry.host}/{repo}:c"], check=True,
                   capture_output=True)                                 # c vanishes
    report, _ = mirror(registry, tree, cache, repo=repo)
    assert [(r["tag"], r["status"]) for r in report] == [("a", "skipped"), ("b", "ok"), ("c", "vanished")]
    assert image_id_of(str(tree / aci_name(repo, "b"))) != old_b
    assert (tree / aci_name(repo, "c")).exists()

    report, _ = mirror(registry, tree, cache, "--prune", repo=repo)
    assert [(r["tag"], r["status"]) for r in report] == [("a", "skipped"), ("b", "skipped"), ("c", "pruned")]
    assert not (tree / aci_name(repo, "c")).exists()
    assert sorted(p.name for p in tree.rglob("*.aci")) == ["moving-a-linux-amd64.aci", "moving-b-linux-amd64.aci"]


def test_the_mirror_converts_what_a_moved_tag_names_now_whatever_pull_policy_it_is_given(
        registry: Registry, tmp_path: Path) -> None:
    """Given ``pull_policy="new"`` (the API), each conversion resolved the tag from the
    cache's record of it and converted the old image again, reporting ok (review): the
    mirror resolves every tag itself, and converts it with ``update``."""
    import docker2aci
    from docker2aci.mirror import MirrorSpec
    from docker2aci.mirror import mirror as mirror_api

    repo = "mirror/policy"
    push_tags(registry.layout, registry.running, repo, {"a": "t01"})
    options = docker2aci.ConvertOptions(output_dir=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"),
                                        insecure_allow_http=True, pull_policy="new")
    spec = MirrorSpec((f"{registry.host}/{repo}",), name_prefix=PREFIX)
    [first], _ = mirror_api(spec, options)
    push_tags(registry.layout, registry.running, repo, {"a": "t02"})  # a moves
    [moved], _ = mirror_api(spec, options)
    assert (first.status, moved.status) == ("ok", "ok")
    assert moved.manifest_digest != first.manifest_digest
    # the ACI is the moved tag's image, not the one its record named
    assert moved.acis[0]["image_id"] != first.acis[0]["image_id"]
    assert moved.acis[0]["image_id"] == image_id_of(moved.acis[0]["path"])


def test_include_and_exclude_patterns(registry: Registry, tmp_path: Path) -> None:
    report, proc = mirror(registry, tmp_path / "tree", tmp_path / "cache", "--include", "t0*", "--exclude", "t05",
                          "--exclude", "t07")
    assert [r["tag"] for r in report] == [t for t in TAGS if t.startswith("t0") and t not in ("t05", "t07")]
    # said once, not by the listing and by each of the 7 conversions (a cron job's log; operator review)
    assert [line for line in proc.stderr.splitlines() if "plain http" in line] == [
        f"WARNING: {registry.host}: using plain http (--insecure-allow-http)"]


def test_killed_mid_mirror_then_rerun_gives_the_uninterrupted_tree(first_run: tuple, registry: Registry,
                                                                    tmp_path: Path) -> None:
    tree, cache = tmp_path / "tree", tmp_path / "cache"
    report = tmp_path / "killed-report.json"
    proc = subprocess.Popen([sys.executable, "-m", "docker2aci", "mirror", f"{registry.host}/{MANY}",
                             "--output-dir", str(tree), "--cache-dir", str(cache), "--insecure-allow-http",
                             "--name-prefix", PREFIX, "--report", str(report)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = tree / STATE_DIR / "state.json"
    deadline = time.monotonic() + 120
    written = 0  # the state is saved every few seconds, not after each tag: count the ACIs
    while time.monotonic() < deadline and proc.poll() is None:
        written = len(list(tree.rglob("*.aci")))
        if written >= 5:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 5 <= written < len(TAGS), "the mirror ended before it could be killed mid-way"
    assert not report.exists()
    done_before = len(json.loads(state.read_text())["tags"])  # recorded before the kill

    rerun, _ = mirror(registry, tree, cache)
    statuses = [r["status"] for r in rerun]
    assert statuses.count("skipped") >= done_before          # finished tags are not converted again
    assert set(statuses) <= {"ok", "skipped"}
    assert tree_files(tree) == tree_files(first_run[0])      # ACIs, pages and state, byte for byte


def test_a_tag_that_fails_does_not_stop_the_others(registry: Registry, tmp_path: Path) -> None:
    # no http fallback: every conversion fails the same way, and the listing too
    proc = cli("mirror", f"{registry.host}/{MANY}", "--output-dir", tmp_path / "tree", "--report",
               tmp_path / "r.json", check=1)
    [entry] = load_report(tmp_path / "r.json")
    # the entry of the repository (no tag) is its listing's: the error is the client's, as it said it
    assert (entry["status"], entry["repository"], entry["tag"]) == ("failed", f"{registry.host}/{MANY}", None)
    assert entry["error"].startswith(f"{registry.host}: checking the registry API: TLS failure"), entry["error"]
    cli("mirror", f"{registry.host}/no/such", "--insecure-allow-http", "--output-dir", tmp_path / "tree", "--report",
        tmp_path / "r.json", check=1)
    [entry] = load_report(tmp_path / "r.json")
    assert entry["error"] == (f"{registry.host}/no/such: listing the tags: not found (NAME_UNKNOWN: repository "
                              "name not known to registry)")  # it said "listing the tags" twice (new-user review)
    assert "failed" in proc.stdout


def test_refuses_a_tagged_target_and_a_bad_prefix(registry: Registry, tmp_path: Path) -> None:
    proc = cli("mirror", f"{registry.host}/{MANY}:t01", "--output-dir", tmp_path, check=2)
    assert "without a tag" in proc.stderr
    proc = cli("mirror", f"{registry.host}/{MANY}", "--output-dir", tmp_path, "--name-prefix", "Bad Prefix",
               check=2)
    assert "--name-prefix" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_credentials_typed_in_an_all_repos_target_are_never_shown(registry: Registry, tmp_path: Path) -> None:
    """``--all-repos USER:PASSWORD@HOST`` is refused, as every reference holding credentials
    is, without quoting them: the message quoted the target as typed, password and all."""
    password = "n0t-for-the-log"
    for target in (f"someone:{password}@{registry.host}", f"https://someone:{password}@{registry.host}",
                   f"some:one:pa/ss@{password}@{registry.host}"):
        proc = cli("mirror", "--all-repos", target, "--output-dir", tmp_path / "tree", "--report",
                   tmp_path / "report.json", check=2)
        assert password not in proc.stdout + proc.stderr
        assert f"***@{registry.host}" in proc.stderr and "--creds" in proc.stderr
    assert not (tmp_path / "tree").exists() and not (tmp_path / "report.json").exists()


def test_build_tags_shares_the_base(tmp_path: Path, busybox_basic_layout: Path) -> None:
    """The fixture itself: two tags, four shared layers and one own layer each."""
    layout = build_tags(busybox_basic_layout, tmp_path, ["x", "y"])
    index = json.loads((layout / "index.json").read_text())
    digests = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    layers = {}
    for tag in ("x", "y"):
        blob = layout / "blobs" / "sha256" / digests[tag].split(":")[1]
        layers[tag] = [d["digest"] for d in json.loads(blob.read_text())["layers"]]
    assert layers["x"][:4] == layers["y"][:4] and layers["x"][4] != layers["y"][4]
    assert len(layers["x"]) == 5
    shutil.rmtree(layout)


def test_the_signed_tree_served_by_a_static_server_is_resolved_by_discover(
        registry: Registry, signing_key: Key, tmp_path: Path) -> None:
    """The issue's end-to-end check: mirror with --sign and --name-prefix 127.0.0.1/mirror,
    serve the tree with ``python -m http.server 80``, then ``docker2aci discover
    --insecure-options=http`` finds, downloads and verifies one tag's ACI."""
    tree = tmp_path / "tree"
    mirror(registry, tree, tmp_path / "cache", "--include", "t1[12]", "--sign", signing_key.secret, "--jobs", "2")
    assert (tree / "mirror" / "pubkeys.gpg").read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    trust_dir = tmp_path / "trust"
    cli("trust", "add", "--trust-dir", trust_dir, "--prefix", PREFIX, signing_key.public)
    log = tmp_path / "http.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "http.server", "80", "--bind", "127.0.0.1", "--directory",
                                   str(tree)], stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_pytest)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 80), 1)"],
                             capture_output=True, check=False).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        out_dir = tmp_path / "out"
        proc = cli("discover", "--insecure-options=http", "--trust-dir", trust_dir, "--output-dir", out_dir,
                   f"{PREFIX}/mirror/many,version=t12")
    finally:
        server.terminate()
        server.wait(10)
    [line] = proc.stdout.splitlines()
    image_id, path = line.split(" ", 1)
    served = tree / aci_name(MANY, "t12")
    assert Path(path).read_bytes() == served.read_bytes()
    assert image_id == image_id_of(str(served))
    gpg_verify(signing_key.public, path, tmp_path / "gnupg")
    assert "GET /mirror/mirror/many-t12-linux-amd64.aci " in log.read_text()


def test_tags_pages_and_catalog_follow_link(registry: Registry) -> None:
    """distribution pages _catalog when asked for ``n`` names per page, with a ``Link: <...>;
    rel="next"`` header; the client follows it to the end. (Debian's docker-registry
    answers tags/list whole, whatever ``n``.)"""
    from docker2aci.registry import RegistryClient

    with RegistryClient(registry.host, allow_http=True) as client:
        assert sorted(client.list_tags(MANY, page_size=3)) == TAGS
        everything = client.catalog()
        mark = registry.log_mark()
        assert client.catalog(page_size=1) == everything
        pages = [p for _, p in registry.requests_since(mark) if "/_catalog" in p]
        assert pages[0] == "/v2/_catalog?n=1" and len(pages) >= len(everything) >= 1
        assert MANY in everything


def test_a_new_prefix_or_signing_key_converts_again(registry: Registry, signing_key: Key, tmp_path: Path) -> None:
    from docker2aci import signing

    other = signing.write_key_pair(str(tmp_path / "other"), signing.generate_key(
        "Other <other@example.invalid>", signing.KeyAlgorithm.ED25519))[1]
    tree, cache = tmp_path / "tree", tmp_path / "cache"
    one = ("--include", "t01")
    report, _ = mirror(registry, tree, cache, *one, "--sign", signing_key.secret)
    assert [r["status"] for r in report] == ["ok"]
    report, _ = mirror(registry, tree, cache, *one, "--sign", signing_key.secret)
    assert [r["status"] for r in report] == ["skipped"]
    report, _ = mirror(registry, tree, cache, *one, "--sign", other)
    assert [r["status"] for r in report] == ["ok"]                  # signed again, with the new key
    report, _ = mirror(registry, tree, cache, *one, "--sign", other, "--name-prefix", "127.0.0.1/other")
    assert [r["status"] for r in report] == ["ok"]
    # the tag's files moved to the new prefix: the old ones are gone
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*.aci*")) == [
        "other/mirror/many-t01-linux-amd64.aci", "other/mirror/many-t01-linux-amd64.aci.asc"]
    # and the keys the old prefix published, for ACIs all gone (they stayed: new-user trial)
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("pubkeys.gpg")) == ["other/pubkeys.gpg"]


def test_no_cache_converts_unchanged_tags_again(registry: Registry, tmp_path: Path) -> None:
    """``--no-cache`` ("convert again even if this manifest was converted before") is how a
    tree mirrored by an older docker2aci gets the upgraded converter's ACIs: the state
    records a tag's digest, name and options, never the converter, so without it an
    unchanged tag stays ``skipped`` over the old ACI. The old ACI is stood for by another
    tag's bytes written in place (what an older converter left has other bytes, the
    state the same)."""
    tree, cache = tmp_path / "tree", tmp_path / "cache"
    report, _ = mirror(registry, tree, cache, "--include", "t0[12]")
    assert [(r["tag"], r["status"]) for r in report] == [("t01", "ok"), ("t02", "ok")]
    t01, t02 = tree / aci_name(MANY, "t01"), tree / aci_name(MANY, "t02")
    converted = image_id_of(str(t01))
    t01.write_bytes(t02.read_bytes())
    report, _ = mirror(registry, tree, cache, "--include", "t01")
    assert [(r["tag"], r["status"]) for r in report] == [("t01", "skipped")]
    report, _ = mirror(registry, tree, cache, "--include", "t01", "--no-cache")
    assert [(r["tag"], r["status"], r["error"]) for r in report] == [("t01", "ok", None)]
    [aci] = report[0]["acis"]
    assert aci == {"path": str(t01), "image_id": converted}
    assert image_id_of(str(t01)) == converted
    report, _ = mirror(registry, tree, cache, "--include", "t01")
    assert [(r["tag"], r["status"]) for r in report] == [("t01", "skipped")]


def test_two_tags_that_would_share_a_file_name(registry: Registry, tmp_path: Path) -> None:
    """``col/foo:bar-1`` and ``col/foo-bar:1`` both make ``col/foo-bar-1-<os>-<arch>.aci``:
    the second is refused, the first converted, and the run goes on."""
    push_tags(registry.layout, registry.running, "col/foo", {"bar-1": "t01"})
    push_tags(registry.layout, registry.running, "col/foo-bar", {"1": "t02"})
    report = tmp_path / "r.json"
    cli("mirror", f"{registry.host}/col/foo", f"{registry.host}/col/foo-bar", "--output-dir", tmp_path / "tree",
        "--cache-dir", tmp_path / "cache", "--insecure-allow-http", "--name-prefix", PREFIX, "--report", report,
        check=1)
    entries = load_report(report)
    assert [(e["repository"].split("/", 1)[1], e["tag"], e["status"]) for e in entries] == [
        ("col/foo", "bar-1", "ok"), ("col/foo-bar", "1", "failed")]
    assert "file names of" in entries[1]["error"]


def test_a_tag_about_to_be_replaced_is_no_longer_current_on_disk(
        registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a moved tag's file is replaced, the state on disk stops calling it current:
    a run killed after the replace cannot leave the new file recorded as the old digest."""
    import docker2aci.mirror as mirror_module
    from docker2aci.jobs import execute
    from docker2aci.mirror import MirrorSpec
    from docker2aci.pipeline import ConvertOptions

    repo = "mirror/replaced"
    push_tags(registry.layout, registry.running, repo, {"a": "t01"})
    options = ConvertOptions(output_dir=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"),
                             insecure_allow_http=True)
    spec = MirrorSpec((f"{registry.host}/{repo}",), name_prefix=PREFIX)
    results, _ = mirror_module.mirror(spec, options)
    assert [r.status for r in results] == ["ok"]
    push_tags(registry.layout, registry.running, repo, {"a": "t02"})
    seen = {}

    def killed(jobs: object, **kwargs: object) -> None:  # stands in for the conversions: the state as they start
        seen.update(json.loads((tmp_path / "tree" / STATE_DIR / "state.json").read_text())["tags"])
        raise KeyboardInterrupt

    monkeypatch.setattr(mirror_module, "execute", killed)
    with pytest.raises(KeyboardInterrupt):
        mirror_module.mirror(spec, options)
    assert seen[f"{registry.host}/{repo}:a"]["manifest_digest"] is None
    monkeypatch.setattr(mirror_module, "execute", execute)
    results, _ = mirror_module.mirror(spec, options)
    assert [r.status for r in results] == ["ok"]


def test_the_pages_of_acis_that_are_gone_are_removed(registry: Registry, tmp_path: Path) -> None:
    """The discovery pages follow the ACIs: when a prefix is left with none (its last tag
    pruned, or ``--name-prefix`` changed), its pages no longer announce files that were
    removed (they were left as they were: only prefixes holding an ACI were rewritten)."""
    repo = "mirror/pages"
    push_tags(registry.layout, registry.running, repo, {"only": "t01"})
    tree, cache = tmp_path / "tree", tmp_path / "cache"
    mirror(registry, tree, cache, repo=repo)
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*.html")) == [
        "mirror/index.html", f"mirror/{repo}/index.html"]

    mirror(registry, tree, cache, "--name-prefix", "127.0.0.1/other", repo=repo)
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*.html")) == [
        "other/index.html", f"other/{repo}/index.html"]
    assert [p for p in (tree / "mirror").rglob("*") if p.is_file()] == []

    subprocess.run(["skopeo", "delete", "--tls-verify=false", f"docker://{registry.host}/{repo}:only"], check=True,
                   capture_output=True)
    report, _ = mirror(registry, tree, cache, "--name-prefix", "127.0.0.1/other", "--prune", repo=repo)
    assert [(r["tag"], r["status"]) for r in report] == [("only", "pruned")]
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()) == [
        f"{STATE_DIR}/lock", f"{STATE_DIR}/state.json"]


def test_a_tree_whose_lock_cannot_be_made_is_an_error_naming_it(registry: Registry, tmp_path: Path) -> None:
    """The mirror's lock could not be made (here a file where its directory goes; also a
    read-only tree or another user's): an error naming the file and what to do, and the
    report says so, instead of a Python traceback."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / STATE_DIR).write_text("")
    report, proc = mirror(registry, tree, tmp_path / "cache", "--include", "t01", check=1)
    lock = tree / STATE_DIR / "lock"
    message = f"cannot lock the mirror tree {tree} ({lock}): File exists; the tree must be writable by this user"
    assert proc.stderr.splitlines()[-1] == f"Error: {message}"
    assert [(r["status"], r["error"]) for r in report] == [("failed", message)]


def test_a_mirror_that_writes_nothing_leaves_no_new_tree(registry: Registry, tmp_path: Path) -> None:
    """The repository could not be listed (here it does not exist; also a registry that
    does not answer): the run failed, and left ``tree/.docker2aci-mirror`` with an empty
    state and its lock in a tree it had made (new-user trial). A tree that was there stays,
    without the state directory."""
    target = f"{registry.host}/team/not-there"
    new = tmp_path / "new" / "tree"
    cli("mirror", target, "--insecure-allow-http", "--output-dir", new, "--cache-dir", tmp_path / "cache",
        "--report", tmp_path / "report.json", check=1)
    assert not (tmp_path / "new").exists()
    assert [r["status"] for r in json.loads((tmp_path / "report.json").read_text())] == ["failed"]
    old = tmp_path / "old"
    old.mkdir()
    cli("mirror", target, "--insecure-allow-http", "--output-dir", old, "--cache-dir", tmp_path / "cache", check=1)
    assert old.is_dir() and list(old.iterdir()) == []


def test_sigterm_while_waiting_for_another_mirror_writes_the_report(registry: Registry, tmp_path: Path) -> None:
    """A cron run that overlaps another waits for its lock; stopped there by ``SIGTERM``, it
    exits 143 and still writes its report (it wrote none: the README promises one in
    every case)."""
    import fcntl

    tree, report = tmp_path / "tree", tmp_path / "report.json"
    (tree / STATE_DIR).mkdir(parents=True)
    target = f"{registry.host}/{MANY}"
    with open(tree / STATE_DIR / "lock", "a+b") as held:  # the other mirror
        fcntl.flock(held, fcntl.LOCK_EX)
        with open(tmp_path / "stderr", "w+") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "docker2aci", "mirror", target, "--output-dir", str(tree),
                                     "--cache-dir", str(tmp_path / "cache"), "--insecure-allow-http",
                                     "--name-prefix", PREFIX, "--report", str(report)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                    preexec_fn=die_with_pytest)
            with reaped(proc):
                deadline = time.monotonic() + 30
                while "another mirror is writing this tree" not in (tmp_path / "stderr").read_text():
                    assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()
                    time.sleep(0.01)
                proc.send_signal(signal.SIGTERM)
                stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143
    message = "interrupted before its tags were listed, or while it recorded them; the next run finishes it"
    assert [(r["source"], r["status"], r["error"], r["acis"]) for r in load_report(report)] == [
        (target, "skipped", message, [])]
    assert stdout == f"skipped\t{target}\t{message}\n"
    assert sorted(p.name for p in tree.rglob("*")) == [STATE_DIR, "lock"]


def test_image_is_not_a_mirror_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """``mirror --help`` listed ``--image`` (for local files), which mirror then refused."""
    from docker2aci.cli import main

    assert main(["mirror", "--image", "x", "127.0.0.1:9/app"]) == 2
    assert capsys.readouterr().err.startswith("Error: --image is not an option of docker2aci mirror but of convert")
    with pytest.raises(SystemExit) as done:
        main(["mirror", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--name-prefix" in out and "--image" not in out


@pytest.mark.parametrize("argv, message", [
    pytest.param(["127.0.0.1:5000"], "Error: '127.0.0.1:5000' is a registry host: mirror takes HOST/REPO, or "
                 "--all-repos HOST for every repository of the registry", id="host-read-as-name-and-tag"),
    pytest.param(["docker://127.0.0.1:5000/app"], "Error: 'docker://127.0.0.1:5000/app': mirror takes HOST/REPO "
                 "without docker://", id="source-syntax"),
    pytest.param(["--all-repos", "docker://u:pw@127.0.0.1:5000"], "Error: 'docker://***@127.0.0.1:5000': mirror "
                 "takes HOST without docker://", id="source-syntax-all-repos-credentials-hidden"),
    # a port out of range was read as a tag ("without a tag or digest"), and with --all-repos
    # as no host at all (review)
    pytest.param(["localhost:0"], "Error: 'localhost:0': the registry's port 0 is not 1-65535", id="port-0"),
    pytest.param(["--all-repos", "127.0.0.1:99999"], "Error: '127.0.0.1:99999': the registry's port 99999 is not "
                 "1-65535", id="port-above-65535-all-repos"),
])
def test_a_target_in_another_syntax_says_what_to_give(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      argv: list[str], message: str) -> None:
    """``mirror 127.0.0.1:5000`` said "mirror takes HOST/REPO without a tag or digest" (the
    port read as a tag), ``mirror docker://HOST/REPO`` "invalid reference format (registry
    host)" (new-user review); nothing is made."""
    from docker2aci.cli import main

    assert main(["mirror", *argv, "--output-dir", str(tmp_path / "tree")]) == 2
    assert capsys.readouterr().err == message + "\n"
    assert not (tmp_path / "tree").exists()


def test_recording_many_tags_saves_the_state_every_few_seconds_not_every_tag(tmp_path: Path) -> None:
    """The state file was written (whole, synced) after every converted tag: 10,000 tags
    make a 6 MB file, and a first mirror of them spent about 20 minutes saving it (mirror
    review). Records are now saved at most every ``SAVE_EVERY_SECONDS``, and the run's end
    saves them all."""
    from docker2aci import mirror as mirror_module
    from docker2aci.jobs import OK, Job, JobResult
    from docker2aci.pipeline import ConvertOptions

    (tmp_path / STATE_DIR).mkdir()
    state = mirror_module.MirrorState(str(tmp_path))
    saved = []
    real_save = state.save

    def counting_save() -> None:
        saved.append(len(state.tags))
        real_save()

    state.save = counting_save  # type: ignore[method-assign]
    for n in range(500):
        tag = mirror_module._Tag("127.0.0.1:5000", "many", f"t{n}", PREFIX, f"{PREFIX}/many")
        result = JobResult(tag.source, OK, None, [], manifest_digest="sha256:" + "0" * 64)
        mirror_module._record(state, tag, Job(tag.source, ConvertOptions()), result, {})
    assert saved == [1]  # the first record; the next 499 within the same seconds
    state.save()
    state.tags = {}
    state.load()
    assert len(state.tags) == 500


def test_a_listing_of_more_names_than_the_limit_is_refused(registry: Registry,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry answering page after page of names filled memory (1.2 million tags held
    306 MB, mirror review): a listing holds at most ``MAX_LIST_ITEMS`` names in all."""
    from docker2aci.errors import LimitExceeded
    from docker2aci.registry import RegistryClient, client as client_module

    with RegistryClient(registry.host, allow_http=True) as client:
        monkeypatch.setattr(client_module, "MAX_LIST_ITEMS", len(TAGS))
        assert sorted(client.list_tags(MANY)) == TAGS
        monkeypatch.setattr(client_module, "MAX_LIST_ITEMS", len(TAGS) - 1)
        with pytest.raises(LimitExceeded, match=f"listing the tags of {registry.host}/{MANY}: more than "
                                                f"{len(TAGS) - 1} names"):
            client.list_tags(MANY)


def test_dask_relative_paths_are_the_callers(registry: Registry, signing_key: Key, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``mirror --executor dask`` with relative paths: the tree, the cache, the spool
    directory and the signing key are the caller's, not the Dask workers' working
    directory's (new-user review)."""
    distributed = pytest.importorskip("distributed")
    caller, workers = caller_and_workers(tmp_path, signing_key)
    monkeypatch.chdir(workers)  # the worker processes start here
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        proc = cli("mirror", f"{registry.host}/{MANY}", "--include", "t09", "--include", "t10",
                   "--executor", "dask", "--scheduler", cluster.scheduler_address, "--output-dir", "tree",
                   "--cache-dir", "cache", "--tmp-dir", "tmp", "--sign", "keys/release.sec.asc",
                   "--insecure-allow-http", "--name-prefix", PREFIX, "--report", "report.json", cwd=caller, check=None)
    report = load_report(caller / "report.json")
    assert [(r["tag"], r["status"], r["error"]) for r in report] == [("t09", "ok", None), ("t10", "ok", None)], \
        proc.stderr
    assert proc.returncode == 0, proc.stderr
    for entry in report:
        [aci] = entry["acis"]
        assert aci["path"] == str(caller / "tree" / aci_name(MANY, entry["tag"]))
        assert Path(f"{aci['path']}.asc").is_file()
    assert (caller / "cache").is_dir()
    assert list(workers.iterdir()) == []  # nothing written where the workers run


def test_artifact_tags_are_skipped_and_checked_by_head_later(registry: Registry, tmp_path: Path) -> None:
    """A repository holding artifacts beside its images (cosign's ``sha256-<hex>.sig``, an
    SBOM, a Helm chart) made every mirror run exit 1, each artifact tag "failed" (new-user
    review). Artifact tags are ``skipped`` with the reason and recorded: the next run finds
    them unchanged with a HEAD, as it finds images."""
    from services import push
    from test_image_shapes import LAYOUT, helm_chart, sbom_artifact

    repo = "art/mixed"
    push(f"oci:{LAYOUT}:latest", registry.running, f"{repo}:v1")
    push(f"oci:{helm_chart(tmp_path)}:latest", registry.running, f"{repo}:chart")
    push(f"oci:{sbom_artifact(tmp_path)}:latest", registry.running, f"{repo}:sha256-0123.sbom")
    tree, cache = tmp_path / "tree", tmp_path / "cache"

    report, proc = mirror(registry, tree, cache, repo=repo)
    assert [(r["tag"], r["status"]) for r in report] == [("chart", "skipped"), ("sha256-0123.sbom", "skipped"),
                                                         ("v1", "ok")], proc.stderr
    assert report[0]["error"] == ("manifest: config.mediaType 'application/vnd.cncf.helm.config.v1+json' is not an "
                                  "image config: an artifact, not a container image; nothing to convert")
    assert "artifactType 'application/spdx+json'" in report[1]["error"]
    assert sorted(p.name for p in tree.rglob("*.aci")) == ["mixed-v1-linux-amd64.aci"]

    mark = registry.log_mark()
    again, _ = mirror(registry, tree, cache, repo=repo)
    assert [(r["tag"], r["status"], r["error"] == e["error"]) for r, e in zip(again, report)] == [
        ("chart", "skipped", True), ("sha256-0123.sbom", "skipped", True), ("v1", "skipped", False)]
    manifests = sorted(request for request in registry.requests_since(mark) if "/manifests/" in request[1])
    assert manifests == [("HEAD", f"/v2/{repo}/manifests/{tag}") for tag in ("chart", "sha256-0123.sbom", "v1")]


def test_no_cache_removes_the_aci_an_older_version_made_of_an_artifact(registry: Registry, tmp_path: Path) -> None:
    """docker2aci before artifacts were told apart (8775900, 2026-11-30) converted a Helm
    chart's tag and recorded its ACI like an image's (``acis``, no ``artifact``); that
    layout is written here over today's record, another tag's ACI standing for the old
    one. An unchanged tag stays ``skipped``; ``--no-cache`` reads its manifest again, so
    the tag is the artifact it is and the old ACI and its page entry go in that run."""
    from services import push
    from test_image_shapes import LAYOUT, helm_chart

    repo = "art/upgraded"
    push(f"oci:{LAYOUT}:latest", registry.running, f"{repo}:v1")
    push(f"oci:{helm_chart(tmp_path)}:latest", registry.running, f"{repo}:chart")
    tree, cache = tmp_path / "tree", tmp_path / "cache"
    report, _ = mirror(registry, tree, cache, repo=repo)
    assert [(r["tag"], r["status"]) for r in report] == [("chart", "skipped"), ("v1", "ok")]
    reason = report[0]["error"]
    chart = tree / aci_name(repo, "chart")
    shutil.copyfile(tree / aci_name(repo, "v1"), chart)
    state_path = tree / STATE_DIR / "state.json"
    state = json.loads(state_path.read_text())
    entry = state["tags"][f"{registry.host}/{repo}:chart"]
    del entry["artifact"]
    entry["acis"] = [{"path": aci_name(repo, "chart"), "image_id": image_id_of(str(chart)), "os": "linux",
                      "arch": "amd64"}]
    state_path.write_text(json.dumps(state))

    report, _ = mirror(registry, tree, cache, repo=repo)
    assert [(r["tag"], r["status"]) for r in report] == [("chart", "skipped"), ("v1", "skipped")]
    assert report[0]["error"].startswith("unchanged: ")
    report, _ = mirror(registry, tree, cache, "--no-cache", repo=repo)
    assert [(r["tag"], r["status"], r["error"]) for r in report] == [("chart", "skipped", reason), ("v1", "ok", None)]
    assert sorted(p.name for p in tree.rglob("*.aci")) == ["upgraded-v1-linux-amd64.aci"]
    pages = {str(p.relative_to(tree)): p.read_text() for p in tree.rglob("index.html")}
    assert [name for name, text in pages.items() if "upgraded-v1-linux-amd64.aci" in text]
    assert [name for name, text in pages.items() if "chart" in text] == []



def test_a_repository_the_catalog_no_longer_lists_is_reported_not_pruned(tag_layout: Path, tmp_path: Path) -> None:
    """``--all-repos --prune`` removed the ACIs of every repository the catalog no longer
    listed, as if deleted: a registry may list there only what the credentials may see, so
    narrower credentials, or a storage that was not mounted, wiped the tree (mirror
    review). Such a repository's tags are now reported ``vanished`` and kept;
    ``--prune-repos`` removes them. Here the registry's catalog loses ``team/b`` (its
    storage moved away) and gets it back."""
    from services import run_registry

    with run_registry(tmp_path / "registry") as running:
        push_tags(tag_layout, running, "team/a", {"v1": "t01"})
        push_tags(tag_layout, running, "team/b", {"v1": "t02"})
        tree, report = tmp_path / "tree", tmp_path / "report.json"
        stored = running.root / "data" / "docker" / "registry" / "v2" / "repositories" / "team"
        b_aci = tree / "mirror" / "team" / "b-v1-linux-amd64.aci"

        def all_repos(*args: str, check: int = 0) -> list[tuple[object, ...]]:
            cli("mirror", "--all-repos", running.host, "--output-dir", tree, "--cache-dir", tmp_path / "cache",
                "--insecure-allow-http", "--name-prefix", PREFIX, "--report", report, *args, check=check)
            return [(r["repository"], r["tag"], r["status"], r["error"]) for r in load_report(report)]

        assert [entry[2] for entry in all_repos()] == ["ok", "ok"]
        built = b_aci.read_bytes()

        (stored / "b").rename(tmp_path / "b-away")  # the catalog no longer lists team/b
        gone = f"{running.host}/team/b"
        unlisted = ("its repository is no longer in the registry's catalog (deleted, or not visible to these "
                    "credentials)")
        assert all_repos("--prune")[1:] == [(gone, "v1", "vanished", f"{unlisted}; --prune-repos removes its ACIs")]
        assert b_aci.read_bytes() == built
        assert f"{gone}:v1" in json.loads((tree / STATE_DIR / "state.json").read_text())["tags"]

        (tmp_path / "b-away").rename(stored / "b")  # back: nothing to convert again
        assert [entry[2] for entry in all_repos("--prune")] == ["skipped", "skipped"]

        (stored / "b").rename(tmp_path / "b-away")
        assert all_repos("--prune", "--prune-repos")[1:] == [
            (gone, "v1", "pruned", f"{unlisted}; its ACIs were removed")]
        assert not b_aci.exists()
        assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*.aci")) == ["mirror/team/a-v1-linux-amd64.aci"]


@pytest.mark.parametrize("without", ["--all-repos", "--prune"])
def test_prune_repos_needs_all_repos_and_prune(registry: Registry, tmp_path: Path, without: str) -> None:
    """``--prune-repos`` acts on the repositories a catalog no longer lists, and only
    removes with ``--prune``: given without either, it would do nothing, silently."""
    target = registry.host if without == "--prune" else f"{registry.host}/{MANY}"
    flags = [f for f in ("--all-repos", "--prune") if f != without]
    proc = cli("mirror", target, *flags, "--prune-repos", "--output-dir", tmp_path / "tree", check=2)
    assert proc.stderr == ("Error: --prune-repos: only with --all-repos and --prune (it prunes the repositories "
                           "the registry's catalog no longer lists)\n")
    assert not (tmp_path / "tree").exists()


@pytest.mark.parametrize("fault", ["bad-state-file", "unlockable-tree", "tree-is-a-file"])
def test_json_prints_the_report_of_a_run_that_could_not_start(registry: Registry, tmp_path: Path,
                                                              fault: str) -> None:
    """``--json`` printed nothing when the run failed as a whole (its state file unreadable,
    its tree not writable): a program reading standard output got no record. It now
    prints the report ``--report`` writes: one ``failed`` entry, with the fields of every
    other mirror entry; the exit status stays 1 and the error is on standard error."""
    tree = tmp_path / "tree"
    if fault == "bad-state-file":
        (tree / STATE_DIR).mkdir(parents=True)
        (tree / STATE_DIR / "state.json").write_text("{bad")
        message = (f"reading the mirror state {tree / STATE_DIR / 'state.json'}: Expecting property name enclosed "
                   "in double quotes: line 1 column 2 (char 1); remove it to start over")
    elif fault == "unlockable-tree":
        tree.mkdir()
        (tree / STATE_DIR).write_text("")
        message = (f"cannot lock the mirror tree {tree} ({tree / STATE_DIR / 'lock'}): File exists; the tree must be "
                   "writable by this user")
    else:  # it said "creating the mirror tree TREE: File exists", as if the tree were fine
        tree.write_text("")
        message = f"output directory {tree}: it, or a directory above it, is a file, not a directory"
    report, proc = mirror(registry, tree, tmp_path / "cache", "--json", check=1)
    assert json.loads(proc.stdout) == report == [{
        "source": f"{registry.host}/{MANY}", "repository": None, "tag": None, "status": "failed", "error": message,
        "acis": [], "bytes_fetched": 0, "seconds": 0.0, "manifest_digest": None}]
    assert proc.stderr.splitlines()[-1] == f"Error: {message}"


def test_an_invalid_tag_in_the_list_is_one_failed_entry(registry: Registry, tmp_path: Path) -> None:
    """A tag the tag grammar refuses (``..``, ``../x``: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``,
    so no conforming registry lists one) made the whole repository's listing fail, and
    none of its tags was mirrored. Each is now a ``failed`` entry naming it, no request is
    made for it, nothing is written for it inside or outside the tree, and the other tags
    are mirrored."""
    from faultproxy import Fault, FaultProxy

    work = tmp_path / "work"
    work.mkdir()
    long = "x" * 100_000  # shown cut in the message (it was shown whole), whole in the report's fields
    listing = json.dumps({"name": MANY, "tags": ["t01", "..", "../../escape", long]}).encode()
    with FaultProxy(registry.running.url) as proxy:
        proxy.add(Fault.respond(200, target="list", times=None, headers=(("Content-Type", "application/json"),),
                                body=listing))
        proc = cli("mirror", f"{proxy.host}/{MANY}", "--output-dir", work / "tree", "--cache-dir", tmp_path / "cache",
                   "--insecure-allow-http", "--name-prefix", PREFIX, "--report", tmp_path / "r.json", check=1)
        asked = {seen.path for seen in proxy.requests if "/manifests/" in seen.path}
        where = f"{proxy.host}/{MANY}"
    grammar = "a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
    assert [(r["repository"], r["tag"], r["status"], r["error"]) for r in load_report(tmp_path / "r.json")] == [
        (where, "..", "failed", f"{where}: tags/list names an invalid tag '..' ({grammar})"),
        (where, "../../escape", "failed", f"{where}: tags/list names an invalid tag '../../escape' ({grammar})"),
        (where, "t01", "ok", None),
        (where, long, "failed", f"{where}: tags/list names an invalid tag '{'x' * 200}…' ({grammar})")], proc.stderr
    assert asked == {f"/v2/{MANY}/manifests/t01"}  # (the planner's, then the conversion's)
    assert sorted(p.name for p in work.iterdir()) == ["tree"]
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*.aci")) == [f"tree/{aci_name(MANY, 't01')}"]


def test_a_page_that_cannot_be_written_does_not_hide_the_tags(registry: Registry, tmp_path: Path) -> None:
    """A file where a discovery page's directory goes (``mirror/<repo>``, left by hand): the
    tag was converted and recorded, yet the report was one ``failed`` entry for the whole
    run, "writing the discovery pages under TREE: File exists", naming neither the file nor
    the tag whose ACI is in the tree. The tag keeps its entry, one more ``failed`` entry
    (named by the targets, as a run's) names the file, and the exit status is 1."""
    repo = "mirror/blocked"
    push_tags(registry.layout, registry.running, repo, {"a": "t01"})
    tree = tmp_path / "tree"
    (tree / "mirror" / "mirror").mkdir(parents=True)
    (tree / "mirror" / "mirror" / "blocked").write_text("not a directory\n")
    report, proc = mirror(registry, tree, tmp_path / "cache", "--json", repo=repo, check=1)
    message = f"writing the discovery pages under {tree}: {tree}/mirror/mirror/blocked: File exists"
    assert [(r["source"], r["tag"], r["status"], r["error"]) for r in report] == [
        (f"docker://{registry.host}/{repo}:a", "a", "ok", None), (f"{registry.host}/{repo}", None, "failed", message)]
    assert json.loads(proc.stdout) == report
    assert report[0]["acis"] == [{"path": str(tree / aci_name(repo, "a")),
                                  "image_id": image_id_of(str(tree / aci_name(repo, "a")))}]
    assert list(json.loads((tree / STATE_DIR / "state.json").read_text())["tags"]) == [f"{registry.host}/{repo}:a"]
    assert f"ERROR: {message}" in proc.stderr.splitlines()


def _fill(directory: Path) -> None:
    """Write zeros into ``directory/filler`` until its file system is full."""
    with (directory / "filler").open("wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError as err:
            assert err.errno == 28, err


def test_a_full_tree_reports_each_tag_and_the_state_it_could_not_save(
        registry: Registry, tmp_path: Path, tmpfs: Callable[[str, str], Path]) -> None:
    """The tree on a full disk: the state could not be saved at the end, and the report was
    one ``failed`` entry for the whole run, without its tags; a tag whose ACI the conversion
    cache held (on another file system) failed with "[Errno 28] No space left on device",
    where every other write says "No space left on device". Now each tag has its entry,
    then one ``failed`` entry per step of the end that failed (the state, the pages), and
    no file is half-written."""
    repo = "mirror/full"
    push_tags(registry.layout, registry.running, repo, {"a": "t01", "b": "t02"})
    cache = tmp_path / "cache"
    mirror(registry, tmp_path / "roomy", cache, repo=repo)  # both conversions in the cache
    tree = tmpfs("tree", "3m")  # two ACIs (1.1 MB each) fit; the report is written beside it
    first, _ = mirror(registry, tree, cache, "--include", "a", repo=repo)
    _fill(tree)
    before = tree_files(tree)
    report, proc = mirror(registry, tree, cache, "--json", repo=repo, check=1)
    run = f"{registry.host}/{repo}"
    assert [(r["source"], r["status"], r["error"]) for r in report] == [
        (f"docker://{run}:a", "skipped", f"unchanged: {first[0]['manifest_digest']} was converted before"),
        (f"docker://{run}:b", "failed", f"writing {tree / aci_name(repo, 'b')}: No space left on device"),
        (run, "failed", f"writing the mirror state {tree / STATE_DIR / 'state.json'}: No space left on device"),
        (run, "failed", f"writing the discovery pages under {tree}: No space left on device")], proc.stderr
    assert json.loads(proc.stdout) == report
    assert tree_files(tree) == before

    # room for b's ACI alone: the save when b is recorded fails too, and that ended the run
    # as a whole (one failed entry, b's ACI in the tree and in no report)
    aci_bytes = (tmp_path / "roomy" / aci_name(repo, "b")).stat().st_size
    filler = tree / "filler"
    os.truncate(filler, filler.stat().st_size - (aci_bytes + 4095) // 4096 * 4096)
    report, proc = mirror(registry, tree, cache, "--json", repo=repo, check=1)
    state_error = f"writing the mirror state {tree / STATE_DIR / 'state.json'}: No space left on device"
    assert [(r["source"], r["status"], r["error"]) for r in report] == [
        (f"docker://{run}:a", "skipped", f"unchanged: {first[0]['manifest_digest']} was converted before"),
        (f"docker://{run}:b", "ok", None),
        (run, "failed", state_error),
        (run, "failed", f"writing the discovery pages under {tree}: No space left on device")], proc.stderr
    assert f"WARNING: {state_error}; trying again later" in proc.stderr.splitlines()
    assert image_id_of(str(tree / aci_name(repo, "b"))) == report[1]["acis"][0]["image_id"]


@pytest.mark.parametrize("failing", [2, None], ids=["two-then-answers", "down"])
def test_a_registry_failing_tag_after_tag_is_not_asked_for_the_rest(registry: Registry, tmp_path: Path,
                                                                    failing: int | None) -> None:
    """A registry whose manifests answer 500: each tag failed after its retries (HEAD then
    GET, 16 s for a tag mirrored before), one after another, 48 s for 3 tags and hours for
    a large repository (mirror-operator review). After 3 tags in a row, the rest fail
    without a request; a tag that is answered ends the count."""
    from faultproxy import Fault, FaultProxy

    from docker2aci import ConvertOptions
    from docker2aci.mirror import FAILING_IN_A_ROW, MirrorSpec, MirrorState, _Plan
    from docker2aci.registry import RegistryClient
    from docker2aci.registry.retry import RetryPolicy

    attempts = 2
    with FaultProxy(registry.running.url) as proxy:
        proxy.add(Fault.respond(500, target="manifest", times=None if failing is None else failing * attempts))
        plan = _Plan(MirrorState(str(tmp_path / "tree")), ConvertOptions(), {}, MirrorSpec((f"{proxy.host}/{MANY}",)))
        with RegistryClient(proxy.host, allow_http=True, retry=RetryPolicy(attempts=attempts, base_delay=0.01)) as c:
            plan.host(c, proxy.host, PREFIX, [MANY])
        asked = [seen.path for seen in proxy.requests if "/manifests/" in seen.path]
        host = proxy.host
    failed = [(r.extra["tag"], r.error) for r in plan.slots if r is not None]
    where = f"{host}/{MANY}"
    if failing is not None:
        assert [tag for tag, _ in failed] == TAGS[:failing]
        assert [s is None for s in plan.slots] == [False] * failing + [True] * (len(TAGS) - failing)
        assert len(asked) == failing * attempts + len(TAGS) - failing
        return
    assert [tag for tag, _ in failed] == TAGS
    last = failed[FAILING_IN_A_ROW - 1][1]
    assert last == (f"{where}:{TAGS[FAILING_IN_A_ROW - 1]}: fetching the manifest: http://{where.replace(MANY, '')}v2/"
                    f"{MANY}/manifests/{TAGS[FAILING_IN_A_ROW - 1]} answered HTTP 500 (UNKNOWN: injected failure)")
    assert [error for _, error in failed[FAILING_IN_A_ROW:]] == [
        f"{where}:{tag}: not tried: {where} failed 3 requests in a row, each after its retries "
        f"(the last: {last})" for tag in TAGS[FAILING_IN_A_ROW:]]
    assert len(asked) == FAILING_IN_A_ROW * attempts


def test_a_repository_whose_tags_fail_does_not_stop_the_others(registry: Registry, tmp_path: Path) -> None:
    """A registry whose storage is broken for one repository (its tags' links garbled: each
    manifest answers 500) and sound for the next: after 3 of the broken one's tags the
    registry counted as down, and the sound repository failed 'not tried', in every run
    (repositories go in order), so it was never mirrored (review). The count is the
    repository's; the next repository is asked and planned."""
    from docker2aci import ConvertOptions
    from docker2aci.mirror import FAILING_IN_A_ROW, MirrorSpec, MirrorState, _Plan
    from docker2aci.registry import RegistryClient
    from docker2aci.registry.retry import RetryPolicy

    tags = TAGS[:FAILING_IN_A_ROW + 1]
    with run_registry(tmp_path / "registry") as running:
        for repository in ("mirror/bad", "mirror/good"):
            push_tags(registry.layout, running, repository, {tag: tag for tag in tags})
        links = running.root / "data/docker/registry/v2/repositories/mirror/bad/_manifests/tags"
        for tag in tags:
            (links / tag / "current" / "link").write_text("garbled")
        host = running.host
        plan = _Plan(MirrorState(str(tmp_path / "tree")), ConvertOptions(), {},
                     MirrorSpec((f"{host}/mirror/bad", f"{host}/mirror/good")))
        with RegistryClient(host, allow_http=True, retry=RetryPolicy(attempts=2, base_delay=0.01)) as client:
            plan.host(client, host, PREFIX, ["mirror/bad", "mirror/good"])
    failed = [(r.extra["repository"], r.extra["tag"], r.error) for r in plan.slots if r is not None]
    last = (f"{host}/mirror/bad:{tags[-2]}: fetching the manifest: http://{host}/v2/mirror/bad/manifests/{tags[-2]} "
            "answered HTTP 500 (UNKNOWN: unknown error)")
    assert failed[FAILING_IN_A_ROW - 1][2] == last
    assert failed[FAILING_IN_A_ROW:] == [
        (f"{host}/mirror/bad", tags[-1], (f"{host}/mirror/bad:{tags[-1]}: not tried: {host}/mirror/bad failed 3 "
                                          f"requests in a row, each after its retries (the last: {last})"))]
    assert [r is None for r in plan.slots] == [False] * len(tags) + [True] * len(tags)  # the good tags: jobs
    assert [job.source for job in plan.jobs] == [f"docker://{host}/mirror/good:{tag}" for tag in tags]


def test_a_repository_whose_tags_all_fail_leaves_no_empty_directory(registry: Registry, tmp_path: Path) -> None:
    """A repository none of whose tags was written (each failed, or the run was
    interrupted before the first) left its directory, empty, in the tree: each conversion
    makes its output directory before it reads a layer (CLI review). A directory that was
    there before the run stays; the state directory of a run that recorded nothing goes."""
    tree = tmp_path / "tree"
    (tree / "kept").mkdir(parents=True)
    report, _ = mirror(registry, tree, tmp_path / "cache", "--include", "t0[12]", "--max-layer-size", "1",
                       "--name-prefix", "127.0.0.1/kept/mirror", check=1)
    assert [(r["tag"], r["status"]) for r in report] == [("t01", "failed"), ("t02", "failed")]
    assert all("larger than" in str(r["error"]) for r in report), report
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_dir()) == ["kept"]


@pytest.mark.parametrize("root", ["tree", "/"], ids=["a-tree", "the-root-directory"])
def test_directories_made_for_nothing_are_removed_under_any_root(tmp_path: Path, root: str) -> None:
    """The directories a run made and left empty go, up to the tree's root, also when the
    tree is ``/`` (whose ``root + "/"`` was ``//``, under which no path is: they stayed);
    what was there before, or holds a file, stays."""
    from docker2aci.mirror import _no_empty_dirs_left

    tree = tmp_path / "tree" if root == "tree" else Path("/")
    (tmp_path / "tree").mkdir()
    empty, written = tmp_path / "tree" / "a" / "b", tmp_path / "tree" / "c" / "d"
    with _no_empty_dirs_left(str(tree), [str(empty), str(written), str(tmp_path)]):
        empty.mkdir(parents=True)
        written.mkdir(parents=True)
        (written / "x.aci").write_bytes(b"")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == \
        ["tree", "tree/c", "tree/c/d", "tree/c/d/x.aci"]
