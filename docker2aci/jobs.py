"""Many conversions at once: the unit of work of ``batch`` and ``mirror``, and the
executors that run it (in this process, in a local process pool, or on a Dask
distributed cluster).

A :class:`Job` is a source and its :class:`~docker2aci.pipeline.ConvertOptions`; a worker
runs :func:`run_job`, which never raises for a failed conversion: it returns a
:class:`JobResult` saying ``failed`` and why, so one bad image never stops the others.
Workers share the blob cache (``ConvertOptions.cache_dir``): its per-digest locks make
a blob that several images share be fetched once, whichever worker gets there first.
Results come back in the order the jobs were given, whatever order they finish in.
Ctrl-C, ``SIGTERM`` or ``SIGHUP`` stops a run between steps (:func:`execute`): no item
starts after it, and the report calls ``ok`` exactly the items whose ACIs were written.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .atomic import scratch_dir
from .errors import Docker2ACIError, UsageError
from .interrupts import signal_of, stopping_on_signals

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
DASK_POLL_INTERVAL = 0.1
"""How often a Dask run looks for finished tasks and for a signal to pass on (seconds)."""
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
        source: the job's source, as shown: a URL's ``user:password@`` is replaced by
            ``***@`` (it stays in the batch file, out of reports and summaries).
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

    def __post_init__(self) -> None:
        from .sources import redact_source

        self.source = redact_source(self.source)

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


class StopFlag(Protocol):
    """What a running job polls to know it should stop (``threading.Event``, or a
    ``multiprocessing`` event shared with worker processes)."""

    def is_set(self) -> bool: ...


class _Stopped(KeyboardInterrupt):
    """Raised inside a conversion at its next step once its run was asked to stop: it
    unwinds as Ctrl-C does (temporary files and partial downloads removed)."""


INTERRUPTED_RUNNING = "interrupted before it finished"
"""The error of an item stopped while it ran (nothing of it was kept)."""
INTERRUPTED_WAITING = "interrupted before it started"
"""The error of an item that had not started when the run was interrupted."""


def _stopping_counter(counter: _ByteCounter, stop: StopFlag) -> Callable[[str, int, int | None], None]:
    """``counter`` as a progress hook that raises :class:`_Stopped` once ``stop`` is set.
    A conversion calls it for each chunk downloaded and each layer read, never after its
    ACI is written: a conversion it stops leaves nothing, and one it does not stop is
    whole (the report never calls a written ACI interrupted)."""
    def hook(task: str, done: int, total: int | None) -> None:
        counter(task, done, total)
        if stop.is_set():
            raise _Stopped()

    return hook


def run_job(job: Job, stop: StopFlag | None = None) -> JobResult:
    """Convert one source; the worker function of every executor (importable, picklable).

    Args:
        job: what to convert.
        stop: once set, the conversion stops at its next step (a chunk downloaded, a
            layer read) and the result is ``skipped`` (:data:`INTERRUPTED_RUNNING`); set
            before the job starts, nothing is done. A job that writes several ACIs
            (``squash`` off, every platform) is not stopped once started: it would leave
            some of them. ``None``: never stopped.

    Returns:
        ``ok`` with the ACIs written, ``skipped`` when ``stop`` stopped it, or ``failed``
        with the error's message: a conversion error, or an unexpected exception named
        by its type (a bug must not end the batch; its traceback is logged at debug level).

    Raises:
        KeyboardInterrupt: only that (and SystemExit) gets through: Ctrl-C itself, not
            ``stop``.
    """
    from .pipeline import ALL_PLATFORMS, convert

    if stop is not None and stop.is_set():
        return JobResult(job.source, SKIPPED, INTERRUPTED_WAITING, extra=job.extra)
    counter = _ByteCounter()
    hook: Callable[[str, int, int | None], None] = counter
    if stop is not None and job.options.squash and job.options.platform != ALL_PLATFORMS:
        # one ACI: stopped before it is written, or not at all. A job writing several
        # (one per layer or per platform) would be stopped between two: it runs to its end.
        hook = _stopping_counter(counter, stop)
    start = time.monotonic()
    try:
        acis = convert(job.source, job.options, progress=hook)
    except _Stopped:
        return JobResult(job.source, SKIPPED, INTERRUPTED_RUNNING, bytes_fetched=counter.total,
                         seconds=time.monotonic() - start, extra=job.extra)
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


class _Interruption:
    """The first stop signal of a run, and the flag its running jobs poll.

    Args:
        flag: set on the first signal; a ``threading.Event`` for jobs run in this
            process, a ``multiprocessing`` event for worker processes.
    """

    def __init__(self, flag: Any) -> None:
        self.flag = flag
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        """Ask the running jobs to stop and start no other (once; the later calls only
        keep the first signal)."""
        if self.signum is None:
            self.signum = signum
            self.flag.set()

    @property
    def requested(self) -> bool:
        """Whether the run was asked to stop."""
        return self.signum is not None


def execute(jobs: Sequence[Job], *, workers: int = 1, executor: str = LOCAL, scheduler: str | None = None,
            done: Done | None = None) -> tuple[list[JobResult], int | None]:
    """Run every job; results in the jobs' order.

    On the first ``SIGINT`` (Ctrl-C), ``SIGTERM`` or ``SIGHUP`` (handled while this runs,
    in the main thread) no other job starts, and the running ones stop at their next
    step: a chunk downloaded, a layer read (:func:`run_job`). A job past its last step
    finishes and is reported ``ok`` with its ACI, so the report always matches the
    output directory; one that was stopped left nothing and is ``skipped``
    (:data:`INTERRUPTED_RUNNING`), as are those that never started
    (:data:`INTERRUPTED_WAITING`). A second signal ends the running jobs at once (a
    conversion waiting on a stalled registry): one running in this process (``--jobs 1``)
    unwinds with its cleanup; worker processes are ended with ``SIGTERM``, like a kill
    (what they leave in the caches is removed by the next run). Either way they are
    ``skipped``. Jobs on a Dask cluster poll a flag file on the shared file system
    (:class:`_FileFlag`) and stop as local ones do; a second signal cancels them without
    waiting (one a cluster's worker is running may still write its ACI).

    Args:
        jobs: what to convert.
        workers: local worker processes (``--jobs``); 1 runs the jobs one after the
            other in this process. Ignored by the Dask executor (the cluster's workers).
        executor: ``local`` or ``dask``.
        scheduler: the Dask scheduler address (``tcp://HOST:PORT``), for ``dask``.
        done: called as each job ends (progress, the mirror's state file).

    Returns:
        ``(results, signum)``: ``signum`` is the signal that interrupted the run, else
        ``None``.

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

    in_process = executor == LOCAL and (workers <= 1 or len(jobs) <= 1)
    context = None
    if executor == LOCAL and not in_process:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
    interruption = _Interruption(threading.Event() if context is None else context.Event())
    started: set[int] = set()
    try:
        with stopping_on_signals(interruption.request):
            if executor == DASK:
                started.update(range(len(jobs)))  # a task that never answers was sent
                _run_dask(jobs, scheduler, finish, interruption)
            else:
                if in_process:
                    for index, job in enumerate(jobs):
                        if interruption.requested:
                            break
                        started.add(index)
                        finish(index, run_job(job, interruption.flag))
                else:
                    _run_pool(jobs, workers, finish, context, interruption, started)
    except KeyboardInterrupt as interrupt:  # a second signal, or Ctrl-C outside the main thread
        interruption.request(signal_of(interrupt))
    final = [r if r is not None else JobResult(job.source, SKIPPED,
                                               INTERRUPTED_RUNNING if index in started else INTERRUPTED_WAITING,
                                               extra=job.extra)
             for index, (r, job) in enumerate(zip(results, jobs))]
    return final, interruption.signum


_worker_stop: StopFlag | None = None
"""In a worker process: the run's stop flag (:func:`_worker_started`)."""


_LoggingSetup = tuple[list[logging.Formatter | None], dict[str, int], bool]
"""The calling process's logging, for its workers: the root logger's handlers' formatters
(each becomes a handler on standard error), the levels of the loggers it set, and whether
it shows a progress bar on the terminal (:class:`_AboveTheBar`)."""


def _logging_setup() -> _LoggingSetup:
    """How the calling process logs (:func:`docker2aci.cli_common.setup_logging`), to be
    repeated in a worker: a worker process starts with no handler, and Python's last
    resort prints a bare message, without the ``WARNING:`` prefix, the escaping of an
    image's control characters or the redaction of a URL's credentials."""
    root = logging.getLogger()
    levels = {name: logger.level for name, logger in logging.Logger.manager.loggerDict.items()
              if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET}
    levels[""] = root.level
    proxy = sys.modules.get("rich.file_proxy")  # rich's stand-in for stderr while a bar is shown
    bar = proxy is not None and isinstance(sys.stderr, proxy.FileProxy)
    return [handler.formatter for handler in root.handlers if isinstance(handler, logging.StreamHandler)], levels, bar


class _AboveTheBar(logging.StreamHandler):  # type: ignore[type-arg]
    """A worker's handler on the terminal while the calling process shows its progress bar
    there: each line starts at the start of the bar's line, erased (CR, then EL: ``ESC [ 2
    K``), so it takes that line whole (it was written after the bar, on its line) and the
    bar, redrawn at its next refresh, comes below it, as the calling process's own lines
    do."""

    def format(self, record: logging.LogRecord) -> str:
        return "\r\x1b[2K" + super().format(record)


def _use_logging_setup(setup: _LoggingSetup) -> None:
    """Log in this worker as the calling process does (:func:`_logging_setup`)."""
    formatters, levels, bar = setup
    root = logging.getLogger()
    for formatter in formatters:
        handler = (_AboveTheBar if bar else logging.StreamHandler)(sys.stderr)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


def _worker_started(stop: StopFlag, pids: Any, caller: int, logging_setup: _LoggingSetup) -> None:
    """The initializer of a local worker process: keep the run's stop flag, tell the
    calling process its PID (``pids``, a queue: a second signal ends the workers), and ignore
    Ctrl-C, which a terminal sends to the whole process group: the calling process
    decides, and tells the workers through the flag, so that a conversion stops only at
    a step where it leaves nothing or everything (:func:`run_job`). ``SIGTERM`` and
    ``SIGHUP`` keep their default action: the pool ends a worker with ``SIGTERM``, and
    one sent to the whole group (as ``systemctl stop`` does) also ends the fork server the
    pool depends on; a worker they end is a killed one (its temporary files are removed by
    the next run). The worker logs as the calling process does (``logging_setup``:
    :func:`_logging_setup`). The worker also ends when the calling process (PID ``caller``) does
    (:func:`_end_with`): killed with ``SIGKILL`` alone, it would otherwise leave its
    workers (and the fork server) running for ever."""
    global _worker_stop
    _worker_stop = stop
    _use_logging_setup(logging_setup)
    pids.put(os.getpid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with(caller)


def _end_with(caller: int) -> None:
    """End this process (as ``SIGTERM`` does) once process ``caller`` has ended: a
    daemon thread waits on a pidfd (Linux 5.3+), else checks every second. A worker's
    parent is the fork server, not the caller, and a pool worker waits for its next job
    without ever noticing that the caller is gone."""
    import select

    try:
        pidfd: int | None = os.pidfd_open(caller)
    except ProcessLookupError:  # gone already
        os.kill(os.getpid(), signal.SIGTERM)
        return
    except (AttributeError, OSError):  # no pidfd_open (an old kernel, not Linux)
        pidfd = None

    def watch() -> None:
        if pidfd is not None:
            poller = select.poll()  # readable once the process has ended
            poller.register(pidfd, select.POLLIN)
            while not poller.poll():
                pass
        else:
            while True:
                time.sleep(1.0)
                try:
                    os.kill(caller, 0)
                except ProcessLookupError:
                    break
                except PermissionError:  # (alive, as another user: cannot be ours)
                    pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="docker2aci-caller-watch", daemon=True).start()


def _run_in_worker(job: Job) -> JobResult:
    """:func:`run_job` in a local worker process, with the run's stop flag."""
    return run_job(job, _worker_stop)


def _run_pool(jobs: Sequence[Job], workers: int, finish: Callable[[int, JobResult], None], context: Any,
              interruption: _Interruption, started: set[int]) -> None:
    """Local worker processes (forkserver: no thread of ours is forked). A job is given
    to the pool only when a worker is free for it (the pool queues one more than it has
    workers, and a queued job cannot be cancelled: it would start after an interrupt),
    and none once the run was interrupted; ``started`` gets the index of each job given."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context.set_forkserver_preload(["docker2aci.jobs", "docker2aci.pipeline"])
    attempts = [0] * len(jobs)
    todo = list(range(len(jobs)))
    while todo and not interruption.requested:  # a dying worker breaks the pool: the jobs not finished go to a new one
        broken: list[int] = []
        waiting = collections.deque(todo)
        running: dict[Any, int] = {}
        pids = context.SimpleQueue()  # this pool's workers (a new pool: no PID of an ended one)
        pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context,
                                   initializer=_worker_started,
                                   initargs=(interruption.flag, pids, os.getpid(), _logging_setup()))
        try:
            usable = True  # until a worker dies: the pool takes no more jobs then
            while running or (waiting and not interruption.requested and usable):
                while waiting and len(running) < workers and not interruption.requested and usable:
                    try:
                        future = pool.submit(_run_in_worker, jobs[waiting[0]])
                    except BrokenProcessPool:  # a worker died since the last wait
                        usable = False
                        break
                    index = waiting.popleft()
                    attempts[index] += 1
                    started.add(index)
                    running[future] = index
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = running.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append(index)
                        usable = False
                        continue
                    finish(index, result)
        except KeyboardInterrupt:  # a second signal: the running jobs end now, not at their next step
            _end_workers(pids)
            raise
        finally:
            if running:  # an error of ours (or an interrupt outside the main thread's handlers)
                interruption.flag.set()
            pool.shutdown(wait=True, cancel_futures=True)
            pids.close()
        todo = [] if interruption.requested else list(waiting)  # never given to the broken pool
        for index in sorted(broken):
            if interruption.requested:  # a worker ended by the same signal (sent to the whole group)
                finish(index, JobResult(jobs[index].source, SKIPPED, INTERRUPTED_RUNNING, extra=jobs[index].extra))
            elif attempts[index] >= POOL_ATTEMPTS:
                finish(index, JobResult(jobs[index].source, FAILED, f"a worker process died under it "
                                        f"{attempts[index]} times (killed, or out of memory)",
                                        extra=jobs[index].extra))
            else:
                todo.append(index)
        todo.sort()
        if broken and todo:
            log.warning("a worker process died; %d unfinished conversions go to new workers", len(todo))


def _end_workers(pids: Any) -> None:
    """Send ``SIGTERM`` to the worker processes whose PIDs are in the queue ``pids``
    (all of one live pool: a worker that already ended is skipped)."""
    while not pids.empty():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids.get(), signal.SIGTERM)


_PATH_OPTIONS = ("output_dir", "tmp_dir", "cache_dir", "cert_dir", "sign_passphrase_file", "claims_dir")
"""The :class:`~docker2aci.pipeline.ConvertOptions` fields that name a file or directory
(``sign_key`` too, when it is not a key's fingerprint: :func:`_for_cluster`)."""


def _for_cluster(job: Job, cwd: str) -> Job:
    """``job`` with each relative path made absolute against ``cwd``, the caller's working
    directory: a Dask worker runs in its own, where ``--output-dir out`` or
    ``oci-archive:demo.tar`` would name other files than with local workers. The paths are
    those of the options (:data:`_PATH_OPTIONS`, and ``sign_key`` unless it is a key's
    fingerprint or key ID and no such file is in ``cwd``) and the source's local path
    (:func:`~docker2aci.sources.absolute_source`)."""
    import dataclasses

    from .sources import absolute_source

    options = job.options
    changes: dict[str, str] = {}
    for name in _PATH_OPTIONS:
        value = getattr(options, name)
        if value and not os.path.isabs(value):
            changes[name] = os.path.normpath(os.path.join(cwd, value))  # os.path.abspath(value) in cwd
    key = options.sign_key
    if key and not os.path.isabs(key):
        from .signing import key_id_spec  # as find_key reads it

        if os.path.isfile(os.path.join(cwd, key)) or key_id_spec(key) is None:
            changes["sign_key"] = os.path.normpath(os.path.join(cwd, key))
    if changes:
        options = dataclasses.replace(options, **changes)  # type: ignore[arg-type]
    source = absolute_source(job.source, cwd)
    if source == job.source and options is job.options:
        return job
    return Job(source, options, job.extra)


def _as_given(result: JobResult, job: Job, sent: Job) -> JobResult:
    """``result`` of ``sent`` (:func:`_for_cluster`) told with ``job``'s source, as the user
    gave it: in its ``source`` and in its error, as a local worker reports it."""
    import dataclasses

    from .sources import redact_source

    if sent.source == job.source:
        return result
    error = result.error
    if error is not None:
        error = error.replace(redact_source(sent.source), redact_source(job.source))
    return dataclasses.replace(result, source=job.source, error=error)


class _FileFlag:
    """The stop flag of jobs on a Dask cluster (picklable): set once the file ``path``
    exists. The caller makes it on the first signal, in the output directory, which the
    cluster's workers see at the same path; a check is one ``stat``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def is_set(self) -> bool:
        return os.path.exists(self.path)


def _run_dask(jobs: Sequence[Job], scheduler: str | None, finish: Callable[[int, JobResult], None],
              interruption: _Interruption) -> None:
    """Tasks on an existing Dask distributed cluster; its workers must see the output and
    cache directories at the same paths. A relative path of a job (its options', its
    source's) is made absolute against this process's working directory before it is
    sent (:func:`_for_cluster`); the results name the sources as given. Once
    ``interruption`` is requested, the tasks are told through a :class:`_FileFlag` in the
    first job's output directory and waited for: they stop as local workers do
    (:func:`run_job`), so the report matches the output directory.

    Raises:
        UsageError: see :func:`execute`.
        OutputError: the flag's directory cannot be made in the output directory."""
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
        cwd = os.getcwd()
    except OSError as err:
        raise UsageError(f"--executor dask: the working directory is gone ({err.strerror or err}): "
                         f"its relative paths cannot be sent to the cluster") from err
    sent = [_for_cluster(job, cwd) for job in jobs]
    try:
        client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise UsageError(f"--scheduler {scheduler}: cannot reach the Dask scheduler: {err}") from err
    futures: dict[Any, int] = {}
    run = uuid.uuid4().hex[:12]  # task keys unique to this run on a shared scheduler
    try:
        with scratch_dir(sent[0].options.output_dir if sent else cwd, ".docker2aci-stop-",
                         "the run's stop flag directory") as flag_dir:
            stop = _FileFlag(os.path.join(flag_dir, "stop"))
            for index, job in enumerate(sent):
                futures[client.submit(run_job, job, stop, pure=False, key=f"docker2aci-{run}-{index}")] = index
            pending = as_completed(list(futures), loop=client.loop)
            while not pending.is_empty():
                if interruption.requested and not stop.is_set():
                    with open(stop.path, "x"):  # the tasks stop at their next step
                        pass
                ready = pending.next_batch(block=False)
                if not ready:
                    time.sleep(DASK_POLL_INTERVAL)
                for future in ready:
                    index = futures[future]
                    try:
                        result = future.result()
                    except Exception as err:  # the task itself failed: a worker died or could not run it
                        result = JobResult(jobs[index].source, FAILED,
                                           f"the Dask task failed: {type(err).__name__}: {err}",
                                           extra=jobs[index].extra)
                    finish(index, _as_given(result, jobs[index], sent[index]))
    finally:
        for future in futures:
            future.cancel()
        client.close()
