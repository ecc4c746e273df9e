"""A write-behind stage: a thread of its own that hashes each chunk and writes it on, so
the caller's thread can produce the next (hashlib, file writes and ISA-L release the GIL).

Two stages use it: a spooled layer's plain bytes (diff-ID hash, then the spool;
:func:`docker2aci.layers.decompress_into`) and the ACI's tar (image-ID SHA-512, then the
compressor; :func:`docker2aci.aci.write_aci`). For the ACI it also keeps the compressor
off the main thread: ``isal.igzip_threaded``'s writer, interrupted (Ctrl-C) inside a
blocking ``write`` with more than one thread, is left out of step and its ``close``
waits forever. Only the main thread receives ``KeyboardInterrupt``, so a compressor fed
from this thread only ever sees whole writes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class WriteBehind:
    """Hash and write chunks, in order, in a thread of its own.

    At most ``depth`` chunks wait, one is being written and the caller holds one, so
    memory is bounded. An error met while hashing or writing is kept and raised in the
    caller's thread at its next :meth:`put`, at :meth:`finish` or by :meth:`raise_error`;
    the chunks after it are dropped, so the caller never waits on a stage that stopped.

    Args:
        update: called with each chunk first (a hash's ``update``).
        write: then called with it (a file's ``write``).
        depth: chunks that may wait.
        translate: turns a kept error into the one raised (``None``: raised as it was).
        name: the thread's name.
    """

    def __init__(self, update: Callable[[bytes], object], write: Callable[[bytes], object], depth: int,
                 translate: Callable[[BaseException], BaseException] | None = None,
                 name: str = "docker2aci-write-behind") -> None:
        self._update, self._write = update, write
        self._translate = translate
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is not None or self._stop.is_set():
                continue  # drain: the caller learns of an error at its next put or at finish
            try:
                self._update(data)
                self._write(data)
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                self._error = err

    def put(self, data: bytes) -> None:
        """Queue ``data`` (a bytes object nobody changes afterwards).

        Raises:
            whatever an earlier chunk met (see :meth:`raise_error`).
        """
        self.raise_error()
        self._queue.put(data)

    def finish(self) -> None:
        """Wait until everything queued is hashed and written.

        Raises:
            whatever a chunk met (see :meth:`raise_error`).
        """
        self._queue.put(None)
        self._thread.join()
        self.raise_error()

    def abandon(self) -> None:
        """Stop without writing what is still queued, and wait for the thread; never
        blocks on the queue, so an interrupt cannot leave the thread waiting for more."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put_nowait(None)  # just emptied, and only the caller's thread puts
        self._thread.join()

    def raise_error(self) -> None:
        """Raise what hashing or writing an earlier chunk met, if anything (through
        ``translate``, chained to the original)."""
        err = self._error
        if err is None:
            return
        translated = err if self._translate is None else self._translate(err)
        if translated is err:
            raise err
        raise translated from err
