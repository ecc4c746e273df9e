"""``docker2aci mirror``: every tag of registry repositories as ACIs in an appc discovery
tree, incrementally and resumably.

The run, for each ``HOST/REPO`` (or every repository of ``HOST`` by ``/v2/_catalog``):

1. list the tags (``/v2/<name>/tags/list``, following ``Link`` pages), keep those that
   match ``--include`` and no ``--exclude`` pattern (shell patterns, :mod:`fnmatch`);
2. ask for each tag's manifest (one request) and compare its digest with the state
   file: a tag already converted from that digest, with the same options and its files
   in place, is ``skipped``; any other is converted (a :class:`~docker2aci.jobs.Job`);
3. run the jobs (:func:`docker2aci.jobs.execute`), recording each finished tag in the
   state file at once (written atomically), so a run killed at any point is finished by
   the next without redoing what was done;
4. report tags that vanished from the registry (removed with ``--prune``), and rewrite
   the discovery pages (:mod:`docker2aci.discovery`). Only a tag list read whole says a
   tag vanished: a repository the catalog no longer lists is reported, its ACIs kept
   (a catalog lists what the credentials may see; ``--prune-repos`` removes them).

An image ``PREFIX/REPO`` (``--name-prefix``; default the registry host, ``:`` made
``-``) of tag ``T`` is written to
``DIR/<PREFIX without its host>/<REPO>-<T>-<os>-<arch>.aci`` (``.aci.asc`` beside it
when signed): the appc discovery template ``{name}-{version}-{os}-{arch}.{ext}`` under
the tree's host. The state lives in ``DIR/.docker2aci-mirror/``; one mirror at a time
may write a directory (a lock there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import fnmatch
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import untrustedjson
from .atomic import (
    atomic_file,
    is_temporary,
    make_output_dir,
    remove_abandoned_in,
    remove_made_dirs,
    remove_quietly,
)
from .digest import Digest
from .errors import Docker2ACIError, InvalidManifest, OutputError, RegistryError, UnsupportedMediaType, UsageError
from .interrupts import signal_of
from .jobs import FAILED, INTERRUPTED_WAITING, OK, SKIPPED, Done, Job, JobResult, execute
from .manifest import document_kind, manifest_digests, parse_manifest, require_image_config
from .reference import ImageRef, api_host, is_valid_host, is_valid_tag, port_problem
from .terminal import abridged

log = logging.getLogger(__name__)

STATE_DIR = ".docker2aci-mirror"
STATE_FILE = "state.json"
STATE_VERSION = 1
SAVE_EVERY_SECONDS = 2.0
"""While tags are recorded, the state file is written at most this often (seconds)."""
SAVE_COST_FACTOR = 20
"""... and at most once in this many times the last save's own duration."""
VANISHED = "vanished"
PRUNED = "pruned"


@dataclass(frozen=True)
class MirrorSpec:
    """What to mirror.

    Attributes:
        targets: ``HOST/REPO`` references without tag (``HOST`` alone with ``all_repos``).
        all_repos: mirror every repository the registry's catalog lists.
        include: tag patterns to keep (shell patterns; none: every tag).
        exclude: tag patterns to leave out (win over ``include``).
        name_prefix: the AC name prefix of the mirrored images (``example.com/mirror``);
            default the registry host with ``:`` made ``-``.
        prune: remove the ACIs of tags that vanished from their repository's tag list.
        prune_repos: with ``all_repos`` and ``prune``, also remove the ACIs of the
            repositories the catalog no longer lists (else reported and kept).
    """

    targets: tuple[str, ...]
    all_repos: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    name_prefix: str | None = None
    prune: bool = False
    prune_repos: bool = False


@dataclass(frozen=True)
class _Tag:
    """One tag seen in the registry."""

    host: str          # as the user named it (``127.0.0.1:5000``, ``docker.io``)
    repository: str
    tag: str
    prefix: str        # the AC name prefix
    name: str          # the AC name of its ACIs

    @property
    def key(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"

    @property
    def source(self) -> str:
        return f"docker://{self.key}"


def tag_selected(tag: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether ``tag`` matches an include pattern (or none are given) and no exclude pattern
    (shell patterns, case-sensitive)."""
    if include and not any(fnmatch.fnmatchcase(tag, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(tag, p) for p in exclude)


def aci_stem(name: str, version: str) -> tuple[str, str]:
    """``(directory relative to the tree, file name stem)`` of the ACIs of AC name ``name``
    and version ``version``: ``("mirror/library", "busybox-latest")`` for
    ``127.0.0.1/mirror/library/busybox`` and ``latest``; the file is
    ``<stem>-<os>-<arch>.aci`` (appc discovery ``{name}-{version}-{os}-{arch}.{ext}``, the
    host left out: it is where the tree is served).

    Raises:
        UsageError: the name has no path below its host, or the version is not one safe
            file name part (:func:`docker2aci.discovery.aci_relpath`).
    """
    from .discovery import aci_relpath

    relpath = aci_relpath(name, version, "os", "arch")  # checks the name and the version
    directory, _, base = relpath[:-len("-os-arch.aci")].rpartition("/")
    return directory, base


class MirrorState:
    """The state file: per tag, the digest it was converted from, the options that
    matter, and the ACIs written (paths relative to the tree).

    Layout (JSON)::

        {"version": 1, "tags": {"HOST/REPO:TAG": {"manifest_digest": "sha256:...",
            "name": "PREFIX/REPO", "version": "TAG", "options": {...},
            "acis": [{"path": "mirror/repo-tag-linux-amd64.aci", "image_id": "sha512-...",
                      "os": "linux", "arch": "amd64"}]}}}
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, STATE_DIR, STATE_FILE)
        self.tags: dict[str, dict[str, Any]] = {}
        self._saved_at = self._next_save = float("-inf")

    def load(self) -> None:
        """Read the state file (none yet: empty).

        Raises:
            OutputError: it exists but cannot be read or is not ours.
        """
        try:
            with open(self.path, "rb") as f:
                doc = untrustedjson.loads(f.read())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            raise OutputError(f"reading the mirror state {self.path}: {err}; remove it to start over") from err
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION or not isinstance(doc.get("tags"), dict):
            raise OutputError(f"{self.path}: not a docker2aci mirror state (version {STATE_VERSION})")
        self.tags = doc["tags"]

    def save(self) -> None:
        """Write the state file atomically.

        Raises:
            OutputError: it cannot be written.
        """
        started = time.monotonic()
        try:
            with atomic_file(self.path, 0o644) as (_, f):
                f.write(json.dumps({"version": STATE_VERSION, "tags": self.tags}, indent=1, sort_keys=True).encode())
        except OSError as err:
            raise OutputError(f"writing the mirror state {self.path}: {err.strerror or err}") from err
        self._saved_at = time.monotonic()
        self._next_save = self._saved_at + max(SAVE_EVERY_SECONDS, SAVE_COST_FACTOR * (self._saved_at - started))

    def save_soon(self) -> None:
        """Save, unless the last save was made less than :data:`SAVE_EVERY_SECONDS` ago
        (or 20 times its own duration: a state of 10,000 tags is 6 MB, and a save after
        every tag made a first mirror of them spend 20 minutes saving). The run saves at
        its end; a run killed before loses the records of its last seconds only, and
        converts those tags again (:meth:`current` finds no record of them). A save that
        fails here (a full disk) is logged and left to the next one: the save at the end
        reports it, after the tags (:func:`mirror`).
        """
        if time.monotonic() >= self._next_save:
            try:
                self.save()
            except OutputError as err:
                log.warning("%s; trying again later", err)
                self._next_save = time.monotonic() + SAVE_EVERY_SECONDS

    def files(self, entry: dict[str, Any]) -> list[str]:
        """The absolute paths of an entry's ACIs and their signatures (when signed); a path
        that would lead out of the tree (a state file edited by hand) is left out."""
        out = []
        for aci in entry.get("acis", ()):
            path = os.path.normpath(os.path.join(self.root, str(aci["path"])))
            if not path.startswith(self.root + os.sep):
                log.warning("%s: ignoring %r, which is not inside the tree", self.path, aci["path"])
                continue
            out.append(path)
            if entry.get("options", {}).get("signer"):
                out.append(path + ".asc")
        return out

    def current(self, key: str, digest: str, name: str, options: dict[str, Any]) -> dict[str, Any] | None:
        """The entry of ``key`` when it was converted from ``digest`` under the AC name
        ``name`` with ``options`` and all its files are still there, else ``None``."""
        entry = self.tags.get(key)
        if (entry is None or entry.get("manifest_digest") != digest or entry.get("name") != name
                or entry.get("options") != options):
            return None
        if not entry.get("acis") or not all(os.path.isfile(p) for p in self.files(entry)):
            return None
        return entry


@contextlib.contextmanager
def _locked(root: str) -> Iterator[None]:
    """Hold the tree's mirror lock (one writer per tree). A lock file the holder removed
    meanwhile (:func:`_remove_empty_state`: its run made the tree and left nothing in it)
    is not held: the lock is taken again, on the file now at its path."""
    directory = os.path.join(root, STATE_DIR)
    path = os.path.join(directory, "lock")
    while True:
        try:
            os.makedirs(directory, exist_ok=True)
            handle = open(path, "a+b")  # noqa: SIM115 (closed by the with below)
        except OSError as err:  # a read-only tree, another user's, a file where the directory goes
            raise OutputError(f"cannot lock the mirror tree {root} ({path}): {err.strerror or err}; "
                              f"the tree must be writable by this user") from err
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("%s: another mirror is writing this tree; waiting for it", root)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(handle.fileno()).st_ino:
                continue  # removed (or replaced) while this run waited
            yield
            return


def _remove_empty_state(root: str, made: list[str]) -> None:
    """Remove the state directory, and the directories of the tree that this run made
    (``made``, from :func:`~docker2aci.atomic.make_output_dir`) if empty, when neither this
    run nor one before it recorded anything: a mirror whose registry did not answer left
    ``.docker2aci-mirror`` with an empty state in the tree. Call it holding the lock; a
    run waiting on it takes the lock again (:func:`_locked`). Best effort."""
    directory = os.path.join(root, STATE_DIR)
    for name in (STATE_FILE, "lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    with contextlib.suppress(OSError):
        os.rmdir(directory)
    remove_made_dirs(made)


def remove_stale_temporaries(root: str) -> list[str]:
    """Remove the temporary files (``.docker2aci-*.tmp``) a killed run left in the tree;
    one a live writer holds locked (:func:`docker2aci.atomic.locked_temp`) is left alone.

    Returns:
        the paths removed.
    """
    removed = []
    for directory, _, files in os.walk(root):
        if any(is_temporary(name) for name in files):
            removed += remove_abandoned_in(directory)
    return removed


def _options_key(options: Any, signer: str | None) -> dict[str, Any]:
    """What of the conversion options a mirrored ACI depends on (a change converts again);
    ``signer`` names the signing key (its fingerprint), ``None`` when not signing."""
    return {"platform": options.platform, "compression": options.compression.value,
            "compression_level": options.compression_level, "signer": signer}


def _parse_target(text: str, all_repos: bool) -> tuple[str, str | None]:
    """``(host, repository)`` of a target (``repository`` ``None`` with ``--all-repos``).

    Raises:
        UsageError: the target is malformed (a ``docker://`` source, or a bare
            ``HOST:PORT`` without ``--all-repos``: each message says what to give), or
            carries a tag or digest.
    """
    from .sources import redact_source

    if text.startswith("docker://"):
        shown = redact_source(text)  # a USER:PASSWORD@ typed in it is never shown
        raise UsageError(f"{shown!r}: mirror takes {'HOST' if all_repos else 'HOST/REPO'} without docker://")
    if all_repos:
        host = text.rstrip("/")
        if not is_valid_host(host):
            shown = redact_source(text)  # a USER:PASSWORD@ typed in it is never shown
            if shown == text and (problem := port_problem(host)) is not None:
                raise UsageError(f"{text!r}: {problem}")
            hint = "; credentials go in --creds USER:PASSWORD or docker login" if shown != text else ""
            raise UsageError(f"{shown!r}: with --all-repos, give registry hosts (HOST[:PORT]){hint}")
        return host, None
    host = text.rpartition(":")[0]
    if "/" not in text and ("." in host or host == "localhost" or host.startswith("[")) \
            and (problem := port_problem(text)) is not None:  # HOST:99999, else read as NAME:TAG
        raise UsageError(f"{text!r}: {problem}")
    try:
        ref = ImageRef.parse(text, default_tag=False)
    except Docker2ACIError as err:  # (it names the text itself, without the credentials it may hold)
        raise UsageError(str(err)) from err
    if "/" not in text and ":" in text and is_valid_host(text):  # 127.0.0.1:5000 read as NAME:TAG
        raise UsageError(f"{text!r} is a registry host: mirror takes HOST/REPO, or --all-repos HOST for every "
                         "repository of the registry")
    if ref.tag or ref.digest:
        raise UsageError(f"{text!r}: mirror takes HOST/REPO without a tag or digest; use --include to pick tags")
    return ref.domain, ref.repository


def _prefix_for(host: str, spec: MirrorSpec) -> str:
    """The AC name prefix of a registry's images: ``--name-prefix``, else the host with
    ``:`` made ``-`` (``127.0.0.1:5000`` → ``127.0.0.1-5000``), lower-cased.

    Raises:
        UsageError: the prefix is not an AC identifier whose first component is a host
            name (discovery fetches ``https://{name}``).
    """
    from .discovery import split_name

    prefix = spec.name_prefix if spec.name_prefix is not None else host.lower().replace(":", "-")
    try:
        split_name(prefix, need_path=False)
    except UsageError as err:
        raise UsageError(f"--name-prefix: {err}") from err
    return prefix


def _manifest_digest(body: bytes, kind: str) -> str:
    """The digest the registry names a manifest by (the JWS payload's for signed schema 1);
    ``kind`` is the body's :func:`~docker2aci.manifest.document_kind`."""
    if kind == "schema1":
        return str(manifest_digests(body)[-1])
    return str(Digest.of_bytes(body))


def mirror(spec: MirrorSpec, options: Any, *, workers: int = 1, executor: str = "local",
           scheduler: str | None = None, done: Done | None = None,
           on_plan: Callable[[list[Job]], None] | None = None) -> tuple[list[JobResult], int | None]:
    """Mirror ``spec`` into ``options.output_dir`` (see the module docstring).

    Args:
        spec: what to mirror.
        options: the :class:`~docker2aci.pipeline.ConvertOptions` of every conversion
            (registry access, cache, compression, platform, signing key).
        workers, executor, scheduler: as :func:`docker2aci.jobs.execute`.
        done: called as each conversion ends.
        on_plan: called as ``on_plan(jobs)`` once the tags are listed.

    Returns:
        ``(results, stopped_by)``: one result per tag seen (``ok``, ``failed``,
        ``skipped`` for unchanged tags), a ``failed`` one per repository that could not be
        listed, then one per vanished tag (``vanished``, or ``pruned``; see
        :func:`_vanished`); the signal that interrupted the run (Ctrl-C, ``SIGTERM``,
        ``SIGHUP``; see :func:`docker2aci.jobs.execute`), else ``None``.

    Raises:
        UsageError: malformed targets or prefix, ``prune_repos`` without ``all_repos`` and
            ``prune``, two repositories that would get the same AC name, a signing key
            that cannot be used.
        OutputError: the tree or its lock cannot be made, or the state cannot be read or
            marked before the conversions; a state or pages that cannot be written at the
            end are a ``failed`` result after the tags' (:func:`run_entry`).
    """
    from .sources import RemoteOptions, registry_client

    root = os.path.abspath(options.output_dir)
    targets = [_parse_target(t, spec.all_repos) for t in spec.targets]
    if not targets:
        raise UsageError("mirror: name at least one HOST/REPO (or HOST with --all-repos)")
    if spec.prune_repos and not (spec.all_repos and spec.prune):
        raise UsageError("--prune-repos: only with --all-repos and --prune (it prunes the repositories the "
                         "registry's catalog no longer lists)")
    signer = None
    if options.sign_key or options.gpg_key:
        from . import signing

        signer = signing.open_signer(key=options.sign_key, passphrase_file=options.sign_passphrase_file,
                                     gpg_key=options.gpg_key)
    prefixes = {host: _prefix_for(host, spec) for host, _ in targets}
    made = make_output_dir(root)
    remote = RemoteOptions(creds=options.creds, cert_dir=options.cert_dir,
                           insecure_skip_verify=options.insecure_skip_verify, allow_http=options.insecure_allow_http,
                           cache_dir=options.cache_dir, tmp_dir=options.tmp_dir)
    with _locked(root):
        for path in remove_stale_temporaries(root):
            log.info("removed %s, left by an interrupted run", path)
        state = MirrorState(root)
        state.load()
        recorded_before = bool(state.tags)
        # every prefix with pages in the tree: a prefix left with no ACI (its last tag pruned,
        # or --name-prefix changed) has its pages rewritten too, which removes them
        paged = {str(entry.get("prefix")) for entry in state.tags.values() if entry.get("prefix")}
        plan = _Plan(state, options, _options_key(options, _signer_id(signer)), spec)
        stopped_by: int | None = None
        try:
            by_host: dict[str, list[str | None]] = {}
            for host, repository in targets:
                by_host.setdefault(host, []).append(repository)
            for host, repositories in by_host.items():
                with registry_client(api_host(host), remote) as client:
                    plan.host(client, host, prefixes[host], repositories)
        except KeyboardInterrupt as interrupt:
            stopped_by = signal_of(interrupt)
            plan.interrupted(targets)
        if on_plan is not None and stopped_by is None:
            on_plan(plan.jobs)
        plan.forget_replaced()  # a killed run must not leave a replaced file looking current

        def finished(index: int, result: JobResult) -> None:
            if result.status == OK:
                _record(state, plan.tags[index], plan.jobs[index], result, plan.wanted)
            if done is not None:
                done(index, result)

        if stopped_by is not None:
            ran = [JobResult(job.source, SKIPPED, INTERRUPTED_WAITING, extra=job.extra) for job in plan.jobs]
        else:
            with _no_empty_dirs_left(root, {job.options.output_dir for job in plan.jobs}):
                ran, stopped_by = execute(plan.jobs, workers=workers, executor=executor, scheduler=scheduler,
                                          done=finished)
        pending = iter(ran)
        results = [slot if slot is not None else next(pending) for slot in plan.slots]
        if stopped_by is None:
            results += _vanished(state, plan, spec)

        def pages() -> None:
            _write_pages(state, signer.public_key() if signer is not None else None, paged)

        if not recorded_before and not state.tags and not any(r.status == OK for r in results):
            _remove_empty_state(root, made)  # nothing recorded, before or now: no state, nor a tree this run made
            return results, stopped_by
        for step in (state.save, pages):
            try:
                step()
            except OutputError as err:  # the tags' results stand: the ACIs they name are in the tree
                log.error("%s", err)
                results.append(run_entry(spec.targets, FAILED, str(err)))
    return results, stopped_by


@contextlib.contextmanager
def _no_empty_dirs_left(root: str, directories: Iterable[str]) -> Iterator[None]:
    """While the block runs, the conversions may make ``directories`` (a conversion makes
    its output directory before it reads a layer); when it ends, however, those of them
    and of their parents inside the tree ``root`` that were missing before and are empty
    now are removed: a repository none of whose tags was written (each failed, or the run
    was interrupted first) leaves no empty directory in the tree. A directory that was
    there before, or holds anything, stays."""
    missing: set[str] = set()
    inside = os.path.join(os.path.abspath(root), "")  # ends in one separator, "/" too
    for directory in directories:
        here = os.path.abspath(directory)
        while here.startswith(inside) and here != inside and not os.path.lexists(here):
            missing.add(here)
            here = os.path.dirname(here)
    try:
        yield
    finally:
        for directory in sorted(missing, key=lambda d: d.count(os.sep), reverse=True):  # the deepest first
            with contextlib.suppress(OSError):  # not empty (written), or gone
                os.rmdir(directory)


def run_entry(targets: Sequence[str], status: str, error: str) -> JobResult:
    """The report entry of the run itself (it could not start, was interrupted outside its
    conversions, or could not save its state or pages): named by its ``targets`` as
    given, with the fields of every mirror entry (``repository`` and ``tag`` ``None``, as
    a registry's failed catalog)."""
    return JobResult(" ".join(targets), status, error, extra={"repository": None, "tag": None})


def _signer_id(signer: Any) -> str | None:
    """The signing key's fingerprint (or gpg key ID): part of what a mirrored ACI depends on."""
    if signer is None:
        return None
    return str(getattr(signer, "fingerprint", None) or getattr(signer, "key_id", None) or signer.description)


def _write_pages(state: MirrorState, pubkeys: str | None, paged: Iterable[str] = ()) -> None:
    """Rewrite the discovery pages of every prefix the state holds, and of each prefix of
    ``paged`` (those the state held before the run), whose pages are removed when it holds
    no ACI any more."""
    from .discovery import write_pages

    by_prefix: dict[str, list[tuple[str, str, str, str]]] = {prefix: [] for prefix in paged}
    for entry in state.tags.values():
        for aci in entry["acis"]:
            by_prefix.setdefault(entry["prefix"], []).append((entry["name"], entry["version"], aci["os"], aci["arch"]))
    for prefix, entries in sorted(by_prefix.items()):
        # a prefix left with no ACI: given the keys, write_pages removes the ones published before
        write_pages(state.root, prefix, entries, pubkeys.encode() if pubkeys is not None else None)


FAILING_IN_A_ROW = 3
"""Requests that may fail in a row, each after its retries (about 8 s: 5xx, 429, a cut
connection), before the rest fail without a request: of one repository, its tags' manifests
(the next repository is asked: one whose storage is broken does not stop the others); of one
registry, its repositories' tag lists. A registry that is down would otherwise cost 16 s per
tag, one after another."""


class _Plan:
    """What a run will do, built while the registries are listed.

    Attributes:
        slots: one per tag (and per listing that failed), in order: a result known
            without converting (``skipped``, ``failed``), or ``None`` for the next job.
        jobs, tags: the conversions to run and the tag each is for.
        listed: ``host/repo`` → every tag the registry has (for vanished tags), for each
            repository whose tags were listed.
        unlisted: ``host/repo`` of every recorded repository the catalog no longer lists
            (``--all-repos``).
    """

    def __init__(self, state: MirrorState, options: Any, wanted: dict[str, Any], spec: MirrorSpec) -> None:
        self.state = state
        self.options = options
        self.wanted = wanted
        self.spec = spec
        self.slots: list[JobResult | None] = []
        self.jobs: list[Job] = []
        self.tags: list[_Tag] = []
        self.listed: dict[str, set[str]] = {}
        self.unlisted: set[str] = set()
        self._names: dict[str, str] = {}
        # host (tag lists), host/repository (tags) -> requests failed in a row (temporary), last error
        self._failing: dict[str, tuple[int, str]] = {}
        # (directory, file stem) -> the tag key owning it: two tags never share a file
        self._files: dict[tuple[str, str], str] = {}
        for key, entry in state.tags.items():
            with contextlib.suppress(UsageError, KeyError, TypeError):
                self._files[aci_stem(entry["name"], entry["version"])] = key

    def host(self, client: Any, host: str, prefix: str, repositories: list[str | None]) -> None:
        """Plan the repositories of one registry (every one its catalog lists with
        ``--all-repos``; the recorded ones it no longer lists are :attr:`unlisted`)."""
        if self.spec.all_repos:
            try:
                repositories = list(client.catalog())
            except Docker2ACIError as err:
                self.slots.append(JobResult(f"docker://{host}", FAILED, f"listing the repositories: {err}",
                                            extra={"repository": None, "tag": None}))
                return
            for key in self.state.tags:
                where = key.rpartition(":")[0]
                if where.startswith(f"{host}/") and where[len(host) + 1:] not in repositories:
                    self.unlisted.add(where)
        for repository in dict.fromkeys(r for r in repositories if r is not None):
            name = f"{prefix}/{repository}"
            if self._names.setdefault(name, f"{host}/{repository}") != f"{host}/{repository}":
                raise UsageError(f"{self._names[name]} and {host}/{repository} would both be named {name}")
            self._repository(client, _Tag(host, repository, "", prefix, name))

    def _down(self, where: str) -> str | None:
        """Why ``where`` (a host: its tag lists; ``HOST/REPOSITORY``: its tags) is not asked
        again (:data:`FAILING_IN_A_ROW`), else ``None``."""
        count, last = self._failing.get(where, (0, ""))
        if count < FAILING_IN_A_ROW:
            return None
        return f"not tried: {where} failed {count} requests in a row, each after its retries (the last: {last})"

    def _answered(self, where: str, err: Docker2ACIError | None = None) -> None:
        """Count a request to ``where`` (as :meth:`_down` names it) that failed for a
        temporary reason; any other outcome ends the count."""
        if isinstance(err, RegistryError) and err.temporary:
            self._failing[where] = (self._failing.get(where, (0, ""))[0] + 1, str(err))
        else:
            self._failing.pop(where, None)

    def _repository(self, client: Any, base: _Tag) -> None:
        """List one repository's tags; an unchanged tag becomes a ``skipped`` result, any
        other a job."""
        where = f"{base.host}/{base.repository}"
        down = self._down(base.host)
        try:
            if down is not None:
                raise RegistryError(where, down)
            tags = client.list_tags(base.repository)
        except Docker2ACIError as err:
            if down is None:
                self._answered(base.host, err)
            # the entry (no tag) is the repository's listing; the client's error says the rest
            self.slots.append(JobResult(f"docker://{where}", FAILED, str(err),
                                        extra={"repository": where, "tag": None}))
            return
        self._answered(base.host)
        self.listed[where] = set(tags)
        for tag_name in sorted(set(tags)):
            if tag_selected(tag_name, self.spec.include, self.spec.exclude):
                self._tag(client, dataclasses.replace(base, tag=tag_name))

    def interrupted(self, targets: Sequence[tuple[str, str | None]]) -> None:
        """After an interrupt while the registries were listed: a ``skipped`` result
        (:data:`~docker2aci.jobs.INTERRUPTED_WAITING`) for every selected tag listed but
        not planned yet, and for every target not listed yet (its repository, or with
        ``--all-repos`` its host): the report says what did not run."""
        planned = {result.source for result in self.slots if result is not None} | {t.source for t in self.tags}
        for where, tags in self.listed.items():
            for tag_name in sorted(tags):
                source = f"docker://{where}:{tag_name}"
                if tag_selected(tag_name, self.spec.include, self.spec.exclude) and source not in planned:
                    self.slots.append(JobResult(source, SKIPPED, INTERRUPTED_WAITING,
                                                extra={"repository": where, "tag": tag_name}))
        for host, repository in targets:
            where = host if repository is None else f"{host}/{repository}"
            reached = where in self.listed or f"docker://{where}" in planned or (
                repository is None and any(w.startswith(f"{host}/") for w in self.listed))
            if not reached:
                self.slots.append(JobResult(f"docker://{where}", SKIPPED, INTERRUPTED_WAITING,
                                            extra={"repository": None if repository is None else where, "tag": None}))

    def _tag(self, client: Any, tag: _Tag) -> None:
        extra = {"repository": f"{tag.host}/{tag.repository}", "tag": tag.tag}
        asked = False
        try:
            if not is_valid_tag(tag.tag):  # before a request or a file name is made of it (`..`, `../x`)
                raise InvalidManifest(extra["repository"], f"tags/list names an invalid tag {abridged(tag.tag)!r} (a "
                                                           f"tag is [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})")
            directory, stem = aci_stem(tag.name, tag.tag)
            owner = self._files.setdefault((directory, stem), tag.key)
            if owner != tag.key:
                raise UsageError(f"its ACIs would have the file names of {owner}'s ({directory}/{stem}-...)")
            if (down := self._down(extra["repository"])) is not None:
                raise RegistryError(f"{tag.host}/{tag.repository}:{tag.tag}", down)  # (as the client names it)
            state = self.state
            recorded = state.tags.get(tag.key, {})
            asked = True
            # a HEAD first for a tag converted before: Docker Hub counts a manifest GET, not a HEAD;
            # --no-cache judges every tag again (the state never records the converter: an
            # upgrade's fixes reach an unchanged tag only so, an older one's ACI of an artifact goes)
            known = self.options.use_cache and recorded.get("manifest_digest")
            digest = client.manifest_digest(tag.repository, tag.tag) if known else None
            artifact = recorded.get("artifact") if digest is not None else None
            if digest is None or digest != recorded.get("manifest_digest"):
                body, media_type = client.get_manifest(tag.repository, tag.tag)
                kind = document_kind(body, media_type or None, "manifest")
                digest = _manifest_digest(body, kind)
                artifact = _artifact(body, kind)
        except Docker2ACIError as err:
            if asked:
                self._answered(extra["repository"], err)
            self.slots.append(JobResult(tag.source, FAILED, str(err), extra=extra))
            return
        self._answered(extra["repository"])
        if isinstance(artifact, str):  # a cosign signature, an SBOM, a Helm chart: nothing to convert
            _record_artifact(state, tag, digest, artifact, self.wanted)
            self.slots.append(JobResult(tag.source, SKIPPED, artifact, manifest_digest=digest, extra=extra))
            return
        entry = state.current(tag.key, digest, tag.name, self.wanted) if self.options.use_cache else None
        if entry is not None:
            acis = [{"path": os.path.join(state.root, a["path"]), "image_id": a["image_id"]} for a in entry["acis"]]
            self.slots.append(JobResult(tag.source, SKIPPED, f"unchanged: {digest} was converted before", acis,
                                        manifest_digest=digest, extra=extra))
            return
        # pull policy update: the tag was just resolved to ``digest``; an older record of it must not win
        job_options = dataclasses.replace(self.options, output_dir=os.path.join(state.root, directory),
                                          output_name=f"{stem}-{{os}}-{{arch}}.aci", ac_name=tag.name,
                                          pull_policy="update")
        self.jobs.append(Job(tag.source, job_options, extra))
        self.slots.append(None)
        self.tags.append(tag)

    def forget_replaced(self) -> None:
        """Mark the recorded conversion of every tag about to be converted again as not
        current, on disk, before any of its files is replaced."""
        changed = False
        for tag in self.tags:
            entry = self.state.tags.get(tag.key)
            if entry is not None and entry.get("manifest_digest") is not None:
                entry["manifest_digest"] = None
                changed = True
        if changed:
            self.state.save()


def _artifact(body: bytes, kind: str) -> str | None:
    """Why the manifest ``body`` of :func:`~docker2aci.manifest.document_kind` ``kind`` is
    no container image (an OCI artifact: its config is no image config,
    :func:`~docker2aci.manifest.require_image_config`), or ``None`` for an image, an
    index, or a manifest the conversion will judge (a malformed one fails there)."""
    if kind != "manifest":
        return None
    try:
        require_image_config(parse_manifest(body, "manifest"), "manifest")
    except UnsupportedMediaType as err:
        return str(err)
    except InvalidManifest:
        return None
    return None


def _record_artifact(state: MirrorState, tag: _Tag, digest: str, reason: str, options_key: dict[str, Any]) -> None:
    """Record a tag that names an artifact (``artifact``: why), so that the next run finds
    it unchanged with a ``HEAD``; the files of an image it named before are removed."""
    old = state.tags.get(tag.key)
    state.tags[tag.key] = {"manifest_digest": digest, "prefix": tag.prefix, "name": tag.name, "version": tag.tag,
                           "options": options_key, "acis": [], "artifact": reason}
    state.save_soon()
    for path in state.files(old or {}):
        remove_quietly(path)


def _record(state: MirrorState, tag: _Tag, job: Job, result: JobResult, options_key: dict[str, Any]) -> None:
    """Record a converted tag (and remove the files of its previous conversion that this
    one did not rewrite: a platform the tag no longer has)."""
    acis = []
    for aci in result.acis:
        name = os.path.basename(aci["path"])
        stem = job.options.output_name.split("{os}", 1)[0] if job.options.output_name else ""
        os_name, _, arch = name[len(stem):-len(".aci")].partition("-")
        acis.append({"path": os.path.relpath(aci["path"], state.root), "image_id": aci["image_id"],
                     "os": os_name, "arch": arch})
    entry = {"manifest_digest": result.manifest_digest, "prefix": tag.prefix, "name": tag.name,
             "version": tag.tag, "options": options_key, "acis": acis}
    old = state.tags.get(tag.key)
    state.tags[tag.key] = entry
    state.save_soon()
    if old is not None:
        keep = set(state.files(entry))
        for path in state.files(old):
            if path not in keep:
                remove_quietly(path)


def _vanished(state: MirrorState, plan: _Plan, spec: MirrorSpec) -> list[JobResult]:
    """A result per recorded tag the registry no longer shows: one its repository's tag
    list no longer names (``pruned`` with ``spec.prune``), or one of a repository the
    catalog no longer lists (:attr:`_Plan.unlisted`; ``pruned`` only with
    ``spec.prune_repos``: a catalog lists what the credentials may see, so a repository
    missing from it may still be there); else ``vanished``, its ACIs kept."""
    out = []
    for key in sorted(state.tags):
        where, _, tag = key.rpartition(":")
        if where in plan.unlisted:
            gone = ("its repository is no longer in the registry's catalog (deleted, or not visible to these "
                    "credentials)")
            prune, flag = spec.prune_repos, "--prune-repos"
        elif where in plan.listed and tag not in plan.listed[where]:
            gone, prune, flag = "the tag is gone from the registry", spec.prune, "--prune"
        else:
            continue
        entry = state.tags[key]
        acis = [{"path": os.path.join(state.root, a["path"]), "image_id": a["image_id"]} for a in entry["acis"]]
        extra = {"repository": where, "tag": tag}
        if prune:
            for path in state.files(entry):
                remove_quietly(path)
            del state.tags[key]
            out.append(JobResult(f"docker://{key}", PRUNED, f"{gone}; its ACIs were removed", acis, extra=extra))
        else:
            out.append(JobResult(f"docker://{key}", VANISHED, f"{gone}; {flag} removes its ACIs", acis, extra=extra))
    return out
