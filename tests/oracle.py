"""An independent oracle for layer semantics: what the real tools make of an image.

The converter's output is judged against ``umoci unpack`` (a real OCI
implementation: whiteouts, opaque dirs, hard links, xattrs) and read back with
GNU tar, never with our own code:

* :func:`umoci_rootfs` unpacks an OCI layout with umoci and returns its rootfs;
* :func:`aci_rootfs` extracts an ACI with GNU tar as root and returns its rootfs;
* :func:`tree_listing` turns a directory tree into a comparable mapping
  ``relative path -> Entry`` (type, permission bits, owner, symlink target,
  content digest, size, ``user.*`` xattrs, hard-link group, device numbers);
* :func:`diff_listings` explains the differences between two listings in
  readable lines for assertion messages.

Typical use::

    expected = tree_listing(umoci_rootfs(layout, "latest", tmp_path / "bundle"))
    actual = tree_listing(aci_rootfs(aci, tmp_path / "aci"))
    assert actual == expected, "\\n".join(diff_listings(expected, actual))

Needs root (real uids, setuid bits, device nodes), umoci (Debian ``umoci``) and
GNU tar (Debian ``tar``). Modification times are not compared: umoci and the
ACI writers legitimately differ there.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

__all__ = [
    "DEFAULT_EXCLUDE",
    "Entry",
    "aci_rootfs",
    "diff_listings",
    "hardlink_groups",
    "tree_listing",
    "umoci_rootfs",
]

#: The stdio symlinks the reference docker2aci adds to every ACI (see
#: ../shared/reference/decisions.md); other tools do not, so listings skip them.
DEFAULT_EXCLUDE: frozenset[str] = frozenset({"dev/stdin", "dev/stdout", "dev/stderr", "dev/fd"})


class OracleError(RuntimeError):
    """A tool used by the oracle (umoci, GNU tar) failed; the message holds its stderr."""


def _run(argv: Sequence[str | os.PathLike[str]]) -> None:
    cmd = [os.fspath(a) for a in argv]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise OracleError(f"{cmd[0]} is not installed: {exc}") from exc
    except subprocess.CalledProcessError as exc:
        raise OracleError(
            f"command failed (exit {exc.returncode}): {' '.join(cmd)}\nstderr:\n{exc.stderr.strip()}"
        ) from exc


def umoci_rootfs(layout_dir: Path, tag: str, dest: Path) -> Path:
    """Unpack ``layout_dir:tag`` with ``umoci unpack`` into the bundle ``dest``.

    ``dest`` must not exist (or be an empty directory). Returns
    ``dest / "rootfs"``. Raises :class:`OracleError` if umoci fails.
    """
    dest = Path(dest)
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run(["umoci", "unpack", "--image", f"{Path(layout_dir).absolute()}:{tag}", dest])
    return dest / "rootfs"


def aci_rootfs(aci_path: Path, dest: Path) -> Path:
    """Extract an ACI (gzip-compressed or plain tar) with GNU tar and return ``dest / "rootfs"``.

    Runs ``tar --xattrs --xattrs-include='*' --numeric-owner -xpf ACI -C dest``
    (GNU tar detects gzip itself; as root it keeps owners, setuid bits and
    creates device nodes). ``dest`` is created if needed. Raises
    :class:`OracleError` if tar fails.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    _run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf",
          Path(aci_path).absolute(), "-C", dest])
    return dest / "rootfs"


@dataclass(frozen=True)
class Entry:
    """One filesystem object of a listing, in a form that compares across tools.

    Attributes:
        type: 'dir', 'file', 'symlink', 'char', 'block', 'fifo' or 'socket'.
        mode: permission bits including setuid/setgid/sticky (``S_IMODE``).
        uid, gid: numeric owner.
        target: symlink target (symlinks only).
        sha256: hex digest of the content (regular files only).
        size: size in bytes (regular files only).
        xattrs: sorted ``(name, value)`` pairs of the extended attributes whose
            names start with one of the listing's prefixes (``user.`` by default).
        links: for regular files, the other paths of the listing that share
            this file's inode (its hard-link group minus itself).
        rdev: ``(major, minor)`` for character and block devices.
    """

    type: str
    mode: int
    uid: int
    gid: int
    target: str | None = None
    sha256: str | None = None
    size: int | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()
    links: frozenset[str] = frozenset()
    rdev: tuple[int, int] | None = None

    def describe(self) -> str:
        """A short human-readable form used by :func:`diff_listings`."""
        parts = [self.type, f"{self.mode:04o}", f"{self.uid}:{self.gid}"]
        if self.target is not None:
            parts.append(f"-> {self.target}")
        if self.sha256 is not None:
            parts.append(f"sha256={self.sha256[:12]} size={self.size}")
        if self.xattrs:
            parts.append(f"xattrs={dict(self.xattrs)}")
        if self.links:
            parts.append(f"links={sorted(self.links)}")
        if self.rdev is not None:
            parts.append(f"rdev={self.rdev[0]},{self.rdev[1]}")
        return " ".join(parts)


def _file_type(st_mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket")):
        if test(st_mode):
            return name
    raise ValueError(f"unknown file type {st_mode:o}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _xattrs(path: Path, prefixes: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for name in names:
        if name.startswith(prefixes):
            out.append((name, os.getxattr(path, name, follow_symlinks=False)))
    return tuple(sorted(out))


def _walk(root: Path) -> Iterable[tuple[str, os.stat_result]]:
    """Yield ``(relative posix path, lstat)`` for everything under ``root`` (not root itself)."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as it:
            for de in it:
                child = f"{rel}/{de.name}" if rel else de.name
                st = de.stat(follow_symlinks=False)
                yield child, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)


def tree_listing(root: Path, exclude: Iterable[str] = DEFAULT_EXCLUDE, *,
                 xattr_prefixes: tuple[str, ...] = ("user.",)) -> dict[str, Entry]:
    """List the tree under ``root`` as ``{relative/posix/path: Entry}`` (root itself not included).

    Args:
        root: the directory to list (e.g. a rootfs). Nothing is followed.
        exclude: relative paths left out, with everything under them. By
            default the four stdio links ``dev/stdin``, ``dev/stdout``,
            ``dev/stderr``, ``dev/fd``; a ``dev`` directory whose entries are all
            excluded (or that is empty) is then left out too, so an image
            without ``/dev`` compares equal to an ACI that only holds the links.
        xattr_prefixes: which extended attributes to record (``user.*`` by
            default; e.g. add ``"security.capability"`` for file capabilities).

    Paths are ``str`` decoded with the filesystem encoding (surrogateescape),
    so byte-exact names survive. Hard-link groups only count paths inside the
    listing. Raises ``OSError`` if ``root`` cannot be read.
    """
    root = Path(root)
    excluded = frozenset(p.strip("/") for p in exclude)

    def is_excluded(rel: str) -> bool:
        return any(rel == e or rel.startswith(e + "/") for e in excluded)

    raw: dict[str, os.stat_result] = {}
    for rel, st in _walk(root):
        if not is_excluded(rel):
            raw[rel] = st

    # Drop `dev` when it only existed to hold excluded entries.
    if any(e.startswith("dev/") for e in excluded) and "dev" in raw and stat.S_ISDIR(raw["dev"].st_mode):
        if not any(p.startswith("dev/") for p in raw):
            del raw["dev"]

    inodes: dict[tuple[int, int], list[str]] = {}
    for rel, st in raw.items():
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)

    listing: dict[str, Entry] = {}
    for rel in sorted(raw):
        st = raw[rel]
        path = root / rel
        kind = _file_type(st.st_mode)
        kwargs: dict[str, object] = {}
        if kind == "symlink":
            kwargs["target"] = os.readlink(path)
        elif kind == "file":
            kwargs["sha256"] = _sha256(path)
            kwargs["size"] = st.st_size
            group = inodes.get((st.st_dev, st.st_ino), [])
            kwargs["links"] = frozenset(p for p in group if p != rel)
        elif kind in ("char", "block"):
            kwargs["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if kind != "symlink":
            kwargs["xattrs"] = _xattrs(path, xattr_prefixes)
        listing[rel] = Entry(type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid,
                             gid=st.st_gid, **kwargs)  # type: ignore[arg-type]
    return listing


def hardlink_groups(listing: Mapping[str, Entry]) -> set[frozenset[str]]:
    """The hard-link groups (sets of >= 2 paths sharing an inode) of a listing."""
    return {frozenset({path, *entry.links}) for path, entry in listing.items() if entry.links}


def diff_listings(a: Mapping[str, Entry], b: Mapping[str, Entry], *, limit: int = 50) -> list[str]:
    """Readable differences between listings ``a`` and ``b`` (empty when equal).

    One line per path: ``only in a: PATH (...)``, ``only in b: PATH (...)`` or
    ``PATH: field a=... b=...`` for each differing field. At most ``limit``
    lines, then a count of the rest.
    """
    lines: list[str] = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            lines.append(f"only in a: {path} ({a[path].describe()})")
        elif path not in a:
            lines.append(f"only in b: {path} ({b[path].describe()})")
        elif a[path] != b[path]:
            for f in fields(Entry):
                va, vb = getattr(a[path], f.name), getattr(b[path], f.name)
                if va != vb:
                    if f.name == "mode":
                        va, vb = f"{va:04o}", f"{vb:04o}"
                    elif f.name == "links":
                        va, vb = sorted(va), sorted(vb)
                    lines.append(f"{path}: {f.name} a={va} b={vb}")
    if len(lines) > limit:
        rest = len(lines) - limit
        lines = lines[:limit] + [f"... and {rest} more differences"]
    return lines
