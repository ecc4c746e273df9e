"""Many conversions at once: the unit of work of ``batch`` and ``mirror``, and the
executors that run it (in this process, in a local process pool, or on a Dask
distributed cluster).

A :class:`Job` is a source and its :class:`~docker2aci.pipeline.ConvertOptions`; a worker
runs :func:`run_job`, which never raises for a failed conversion: it returns a
:class:`JobResult` saying ``failed`` and why, so one bad image never stops the others.
Workers share the blob cache (``ConvertOptions.cache_dir``): its per-digest locks make
a blob that several images share be fetched once, whichever worker gets there first.
Results come back in the order the jobs were given, whatever order they finish in.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import Docker2ACIError, UsageError

if TYPE_CHECKING:
    from .pipeline import ConvertOptions

log = logging.getLogger(__name__)

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"
LOCAL = "local"
DASK = "dask"
EXECUTORS = (LOCAL, DASK)
DASK_CONNECT_TIMEOUT = 30.0
"""How long to wait for the Dask scheduler to answer (seconds)."""
POOL_ATTEMPTS = 3
"""How many times a job is given to a local worker process before a worker dying under it
(killed, out of memory) marks it failed."""
_SCHEDULER = re.compile(r"(tcp|tls)://[^/\s]+:\d+/?")


@dataclass(frozen=True)
class Job:
    """One conversion to run.

    Attributes:
        source: the image source, as ``docker2aci convert`` takes it.
        options: how to convert it (output directory, platform, signing key...).
        extra: fields copied into the report entry (the mirror's repository and tag).
    """

    source: str
    options: ConvertOptions
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    """What one job did: an entry of the ``--report`` file.

    Attributes:
        source: the job's source.
        status: ``ok``, ``failed`` or ``skipped`` (the mirror adds ``vanished`` and ``pruned``).
        error: why it failed or was skipped, else ``None``.
        acis: ``{"path": absolute path, "image_id": "sha512-..."}`` per ACI written.
        bytes_fetched: bytes of blobs downloaded for it (0 when every blob was cached or
            the source is local).
        seconds: wall time of the conversion (seconds).
        manifest_digest: the digest the source's tag pointed to when converted: the
            index (manifest list) digest when there was one, else the manifest's.
        extra: more report fields (``repository``, ``tag`` for the mirror).
    """

    source: str
    status: str
    error: str | None = None
    acis: list[dict[str, str]] = field(default_factory=list)
    bytes_fetched: int = 0
    seconds: float = 0.0
    manifest_digest: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report entry: ``source``, ``status``, ``error``, ``acis``,
        ``bytes_fetched``, ``seconds``, ``manifest_digest`` and the extra fields."""
        return {"source": self.source, **self.extra, "status": self.status, "error": self.error,
                "acis": self.acis, "bytes_fetched": self.bytes_fetched, "seconds": round(self.seconds, 3),
                "manifest_digest": self.manifest_digest}


class _ByteCounter:
    """A progress hook that adds up the bytes of each blob downloaded."""

    def __init__(self) -> None:
        self.per_blob: dict[str, int] = {}

    def __call__(self, task: str, done: int, total: int | None) -> None:
        if task != "layers":  # a blob digest: done is its bytes so far
            self.per_blob[task] = done

    @property
    def total(self) -> int:
        return sum(self.per_blob.values())


def _top_digest(manifest: dict[str, Any]) -> str | None:
    """The digest a tag pointed to, from an ACI manifest's provenance annotations."""
    annotations = {a["name"]: a["value"] for a in manifest.get("annotations", ())}
    return annotations.get("appc.io/docker/manifestlisthash") or annotations.get("appc.io/docker/manifesthash")


def run_job(job: Job) -> JobResult:
    """Convert one source; the worker function of every executor (importable, picklable).

    Returns:
        ``ok`` with the ACIs written, or ``failed`` with the error's message: a
        conversion error, or an unexpected exception named by its type (a bug must not
        end the batch; its traceback is logged at debug level).

    Raises:
        KeyboardInterrupt: only that (and SystemExit) gets through.
    """
    from .pipeline import convert

    counter = _ByteCounter()
    start = time.monotonic()
    try:
        acis = convert(job.source, job.options, progress=counter)
    except Docker2ACIError as err:
        return JobResult(job.source, FAILED, str(err), bytes_fetched=counter.total,
                         seconds=time.monotonic() - start, extra=job.extra)
    except Exception as err:  # a bug: reported per item, never the end of the batch
        log.debug("%s: unexpected error", job.source, exc_info=True)
        return JobResult(job.source, FAILED, f"internal error: {type(err).__name__}: {err}",
                         bytes_fetched=counter.total, seconds=time.monotonic() - start, extra=job.extra)
    return JobResult(job.source, OK, None, [{"path": a.path, "image_id": a.image_id} for a in acis],
                     counter.total, time.monotonic() - start, _top_digest(acis[0].manifest) if acis else None,
                     job.extra)


Done = Callable[[int, JobResult], None]
"""Called in the calling process as ``done(index, result)`` when job ``index`` ends."""


def execute(jobs: Sequence[Job], *, workers: int = 1, executor: str = LOCAL, scheduler: str | None = None,
            done: Done | None = None) -> tuple[list[JobResult], bool]:
    """Run every job; results in the jobs' order.

    Args:
        jobs: what to convert.
        workers: local worker processes (``--jobs``); 1 runs the jobs one after the
            other in this process. Ignored by the Dask executor (the cluster's workers).
        executor: ``local`` or ``dask``.
        scheduler: the Dask scheduler address (``tcp://HOST:PORT``), for ``dask``.
        done: called as each job ends (progress, the mirror's state file).

    Returns:
        ``(results, interrupted)``: on Ctrl-C the jobs not finished are cancelled and
        reported ``skipped`` ("interrupted"), and ``interrupted`` is true.

    Raises:
        UsageError: an unknown executor, a Dask executor without a scheduler or with
            ``--creds`` (credentials are not sent to a cluster: workers read their own
            Docker config), ``distributed`` not installed, or the scheduler unreachable.
    """
    if executor not in EXECUTORS:
        raise UsageError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    results: list[JobResult | None] = [None] * len(jobs)

    def finish(index: int, result: JobResult) -> None:
        results[index] = result
        if done is not None:
            done(index, result)

    interrupted = False
    try:
        if executor == DASK:
            _run_dask(jobs, scheduler, finish)
        elif workers <= 1 or len(jobs) <= 1:
            for index, job in enumerate(jobs):
                finish(index, run_job(job))
        else:
            _run_pool(jobs, workers, finish)
    except KeyboardInterrupt:
        interrupted = True
    final = [r if r is not None else JobResult(job.source, SKIPPED, "interrupted before it finished",
                                               extra=job.extra)
             for r, job in zip(results, jobs)]
    return final, interrupted


def _run_pool(jobs: Sequence[Job], workers: int, finish: Callable[[int, JobResult], None]) -> None:
    """Local worker processes (forkserver: no thread of ours is forked)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["docker2aci.jobs", "docker2aci.pipeline"])
    attempts = [0] * len(jobs)
    todo = list(range(len(jobs)))
    while todo:  # a worker that dies breaks the pool: the jobs not finished go to a new one
        broken: list[int] = []
        pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context)
        try:
            pending = {pool.submit(run_job, jobs[index]): index for index in todo}
            for index in todo:
                attempts[index] += 1
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = pending.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append(index)
                        continue
                    finish(index, result)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        todo = []
        for index in sorted(broken):
            if attempts[index] >= POOL_ATTEMPTS:
                finish(index, JobResult(jobs[index].source, FAILED, f"a worker process died under it "
                                        f"{attempts[index]} times (killed, or out of memory)",
                                        extra=jobs[index].extra))
            else:
                todo.append(index)
        if todo:
            log.warning("a worker process died; %d unfinished conversions go to new workers", len(todo))


def _run_dask(jobs: Sequence[Job], scheduler: str | None, finish: Callable[[int, JobResult], None]) -> None:
    """Tasks on an existing Dask distributed cluster; its workers must see the output and
    cache directories at the same paths."""
    if not scheduler:
        raise UsageError("--executor dask needs --scheduler tcp://HOST:PORT")
    if not _SCHEDULER.fullmatch(scheduler):
        raise UsageError(f"--scheduler {scheduler!r}: expected tcp://HOST:PORT (or tls://HOST:PORT)")
    if any(job.options.creds for job in jobs):
        raise UsageError("--creds is not sent to a Dask cluster: its workers use their own Docker "
                         "credentials (~/.docker/config.json)")
    try:
        from distributed import Client, as_completed
    except ImportError as err:
        raise UsageError("--executor dask needs the 'distributed' package (pip install "
                         "'docker2aci[dask]')") from err
    try:
        client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise UsageError(f"--scheduler {scheduler}: cannot reach the Dask scheduler: {err}") from err
    futures: dict[Any, int] = {}
    run = uuid.uuid4().hex[:12]  # task keys unique to this run on a shared scheduler
    try:
        for index, job in enumerate(jobs):
            futures[client.submit(run_job, job, pure=False, key=f"docker2aci-{run}-{index}")] = index
        for future in as_completed(list(futures), loop=client.loop):
            index = futures[future]
            try:
                result = future.result()
            except Exception as err:  # the task itself failed: a worker died or could not run it
                result = JobResult(jobs[index].source, FAILED, f"the Dask task failed: {type(err).__name__}: {err}",
                                   extra=jobs[index].extra)
            finish(index, result)
    finally:
        for future in futures:
            future.cancel()
        client.close()
