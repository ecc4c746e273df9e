"""Shared plumbing of the atheris fuzz targets in this directory.

Each target is a script, ``python tests/fuzz/fuzz_X.py [libFuzzer args] [CORPUS_DIR...]``,
that calls :func:`main` with its ``test_one`` and its seeds. This module imports nothing
from the project, so that the targets import the code under test inside
``atheris.instrument_imports()`` and get coverage feedback from it.

Rules every target checks (anything else escaping ``test_one`` is a crash):

* only documented errors come out: :data:`ALLOWED` (the ``docker2aci.errors`` root and the
  converters' root);
* no hang: ``-timeout`` (default :data:`DEFAULT_TIMEOUT` seconds per input);
* bounded memory: ``-rss_limit_mb`` (default :data:`DEFAULT_RSS_MB`);
* nothing written outside the target's own temporary directory: the process runs in an
  empty working directory with ``TMPDIR`` pointing into a sandbox that
  :func:`check_sandbox` finds empty after every input.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

DEFAULT_TIMEOUT = 5
"""Seconds an input may run before libFuzzer reports a hang."""
DEFAULT_RSS_MB = 1024
"""Resident memory (MiB) past which libFuzzer reports an out-of-memory crash."""
DEFAULT_MAX_LEN = 64 * 1024
"""Longest input tried (bytes), unless ``-max_len`` is given."""

ALLOWED: tuple[type[BaseException], ...] = ()
"""The documented error roots, filled by :func:`allowed_errors` once the project is imported."""


HEADER_FIELDS = ("name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname", "uname", "gname",
                 "devmajor", "devminor")
"""The :class:`tarfile.TarInfo` fields a decoded header is compared on."""


def decode_header(cls: type[tarfile.TarInfo], block: bytes) -> object:
    """What ``cls.frombuf`` makes of one header block: its :data:`HEADER_FIELDS` (and
    sparse map), or the type of the error it raises; two decoders agree when equal."""
    try:
        info = cls.frombuf(block, "utf-8", "surrogateescape")
    except Exception as err:  # noqa: BLE001 - the kind of failure is what is compared
        return type(err)
    return tuple(getattr(info, f) for f in HEADER_FIELDS) + (getattr(info, "_sparse_structs", None),)


def allowed_errors() -> tuple[type[BaseException], ...]:
    """``Docker2ACIError`` and ``ConversionError``: the only exceptions the code under test
    may raise on bad input (import after instrumentation)."""
    from converters.errors import ConversionError
    from docker2aci.errors import Docker2ACIError

    return (Docker2ACIError, ConversionError)


def instrument_tarfile() -> None:
    """Give the fuzzer coverage of :mod:`tarfile`'s header parsing (imported before the
    instrumented imports, so not instrumented by them), where odd headers go."""
    import atheris

    info: Any = tarfile.TarInfo
    for function in (info.frombuf.__func__, info._proc_member, info._proc_pax, info._proc_gnulong,
                     info._proc_sparse, info._proc_builtin, info._apply_pax_info, info._proc_gnusparse_00,
                     info._proc_gnusparse_01, info._proc_gnusparse_10, tarfile.TarFile.next, tarfile.nti,
                     tarfile.nts):
        atheris.instrument_func(function)


class Sandbox:
    """An empty working directory and temporary directory for the whole run.

    Attributes:
        root: holds ``cwd`` and ``tmp``.
        cwd: the process's working directory; must stay empty.
        tmp: ``TMPDIR`` (and ``tempfile.tempdir``); must be empty between inputs.
    """

    def __init__(self) -> None:
        # libFuzzer ends the process without running atexit handlers, so the sandbox of a
        # run is removed by a later run: one directory per process ID, kept while it lives.
        base = os.path.join(tempfile.gettempdir(), f"docker2aci-fuzz-sandbox-{os.getuid()}")
        os.makedirs(base, exist_ok=True)
        for entry in os.listdir(base):
            if not entry.isdigit() or int(entry) == os.getpid() or not _alive(int(entry)):
                _rmtree(os.path.join(base, entry))
        self.root = os.path.join(base, str(os.getpid()))
        os.mkdir(self.root)
        self.cwd = os.path.join(self.root, "cwd")
        self.tmp = os.path.join(self.root, "tmp")
        os.mkdir(self.cwd)
        os.mkdir(self.tmp)
        os.chdir(self.cwd)
        os.environ["TMPDIR"] = self.tmp
        tempfile.tempdir = self.tmp

    def workdir(self) -> str:
        """A fresh directory for one input's own output (remove it with :meth:`done`)."""
        return tempfile.mkdtemp(prefix="input-", dir=self.tmp)

    def done(self, workdir: str | None = None) -> None:
        """Remove ``workdir`` and check that nothing else was left behind.

        Raises:
            AssertionError: a file appeared in the working or temporary directory.
        """
        if workdir is not None:
            _rmtree(workdir)
        for where in (self.cwd, self.tmp):
            left = os.listdir(where)
            if left:
                for name in left:
                    _rmtree(os.path.join(where, name))
                raise AssertionError(f"files left behind in {where}: {sorted(left)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmtree(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def tar_bytes(entries: Iterable[tuple[str, bytes, str] | tuple[str, bytes]],
              fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A small tar built with :mod:`tarfile`.

    Args:
        entries: ``(name, data)`` for a regular file, or ``(name, data, kind)`` where
            ``kind`` is ``file``, ``dir``, ``sym`` or ``link`` (``data`` is then the
            link target), ``fifo`` or ``chr``.
        fmt: the tar format.
    """
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for entry in entries:
            name, data = entry[0], entry[1]
            kind = entry[2] if len(entry) > 2 else "file"  # type: ignore[misc]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            ti.uname, ti.gname = "root", "root"
            if kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "link": tarfile.LNKTYPE,
                       "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}[kind]
            ti.mode = 0o755 if kind == "dir" else 0o644
            if kind in ("sym", "link"):
                ti.linkname = data.decode()
            tf.addfile(ti)
    data = buf.getvalue().rstrip(b"\0")  # the end-of-archive blocks and record padding: optional
    return data + bytes(-len(data) % 512)


def fix_checksums(data: bytes) -> bytes:
    """Recompute the checksum of every tar header in ``data`` (walking the headers by
    their size fields), so that mutated names, types and link targets still reach the
    code past tarfile's checksum test. Anything unreadable is left as it is."""
    out = bytearray(data)
    offset = 0
    while offset + 512 <= len(out):
        block = out[offset:offset + 512]
        if not any(block):
            offset += 512
            continue
        block[148:156] = b"        "
        out[offset + 148:offset + 156] = b"%06o\0 " % (sum(block) & 0o777777)
        field = bytes(block[124:136]).split(b"\0", 1)[0].strip() or b"0"
        try:
            size = int(field, 8)
        except ValueError:
            break
        if size < 0:
            break
        offset += 512 + ((size + 511) // 512) * 512
    return bytes(out)


def _absolute(arg: str) -> str:
    """A path argument made absolute (the target runs in a sandbox directory)."""
    if not arg.startswith("-"):
        return os.path.abspath(arg)
    for flag in ("-artifact_prefix=", "-exact_artifact_path=", "-dict=", "-merge_control_file="):
        if arg.startswith(flag):
            value = arg[len(flag):]
            absolute = os.path.abspath(value) + (os.sep if value.endswith(os.sep) else "")
            return flag + absolute
    return arg


def _positional(argv: list[str]) -> list[str]:
    return [a for a in argv[1:] if not a.startswith("-")]


def _has_flag(argv: list[str], flag: str) -> bool:
    return any(a.startswith(f"-{flag}=") for a in argv[1:])


def write_seeds(directory: str, seeds: Iterable[bytes]) -> int:
    """Write ``seeds`` into ``directory`` named by their SHA-1, as libFuzzer names its own
    corpus files (so writing them again changes nothing). Returns how many."""
    os.makedirs(directory, exist_ok=True)
    count = 0
    for seed in seeds:
        path = os.path.join(directory, hashlib.sha1(seed).hexdigest())
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(seed)
        count += 1
    return count


def main(name: str, test_one: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]],
         max_len: int = DEFAULT_MAX_LEN) -> None:
    """Run one target under libFuzzer.

    Corpus directories named on the command line receive the seeds first (libFuzzer
    writes new inputs into the first one); with none, the seeds go to a directory under
    the system's temporary directory, kept between runs (libFuzzer adds to it). A file argument runs that one
    input (crash reproduction) without seeds. Defaults added unless given: ``-timeout``,
    ``-rss_limit_mb``, ``-max_len``.

    Args:
        name: the target's name (``tar``, ``squash``...).
        test_one: called with each input.
        seeds: builds the seed inputs.
        max_len: the default ``-max_len``.
    """
    import atheris

    argv = [_absolute(a) if i else a for i, a in enumerate(sys.argv)]
    positional = _positional(argv)
    if not positional:
        seed_dir = os.path.join(tempfile.gettempdir(), f"docker2aci-fuzz-seeds-{os.getuid()}", name)
        write_seeds(seed_dir, seeds())
        argv.append(seed_dir)
    elif all(os.path.isdir(p) or not os.path.exists(p) for p in positional):
        write_seeds(positional[-1], seeds())
    defaults = (("timeout", DEFAULT_TIMEOUT), ("rss_limit_mb", DEFAULT_RSS_MB), ("max_len", max_len),
                ("artifact_prefix", os.getcwd() + os.sep))
    for flag, value in defaults:
        if not _has_flag(argv, flag):
            argv.insert(1, f"-{flag}={value}")
    logging.disable(logging.CRITICAL)  # the code's warnings about odd inputs are expected
    sandbox = Sandbox()
    global ALLOWED
    ALLOWED = allowed_errors()

    wants_workdir = getattr(test_one, "wants_workdir", False)

    def checked(data: bytes) -> None:
        workdir = sandbox.workdir() if wants_workdir else None
        try:
            if workdir is not None:
                test_one(data, workdir)  # type: ignore[call-arg]
            else:
                test_one(data)
        except ALLOWED:
            pass
        finally:
            sandbox.done(workdir)

    atheris.Setup(argv, checked)
    atheris.Fuzz()


def with_workdir(fn: Callable[[bytes, str], None]) -> Callable[[bytes], None]:
    """Mark a ``test_one(data, workdir)`` that writes its output into ``workdir``."""
    fn.wants_workdir = True  # type: ignore[attr-defined]
    return fn  # type: ignore[return-value]
