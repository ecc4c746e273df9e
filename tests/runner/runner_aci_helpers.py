"""Build real test ACIs (manifest + rootfs) from Debian's busybox-static."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.linux import root_is_mount_point

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh", "echo", "ls", "cat", "id", "pwd", "env", "false", "true", "test",
    "sleep", "readlink", "grep", "touch", "stat",
)  # fmt: skip
PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\n"


@dataclass(frozen=True)
class Entry:
    """One extra tar entry of a test ACI (names are archive paths, ``rootfs/...``)."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    mtime: float = 1_700_000_000
    devmajor: int = 0
    devminor: int = 0
    pax: Mapping[str, str] = field(default_factory=dict)

    def add_to(self, archive: tarfile.TarFile) -> None:
        """Append this entry to an open tar."""
        info = tarfile.TarInfo(self.name)
        info.type = self.type
        info.mode = self.mode
        info.linkname = self.linkname
        info.uid, info.gid = self.uid, self.gid
        info.mtime = self.mtime
        info.devmajor, info.devminor = self.devmajor, self.devminor
        info.pax_headers = dict(self.pax)
        info.size = len(self.data) if self.type == tarfile.REGTYPE else 0
        archive.addfile(info, io.BytesIO(self.data) if info.size else None)


def directory(name: str, mode: int = 0o755, **kwargs: Any) -> Entry:
    """A directory entry."""
    return Entry(name, tarfile.DIRTYPE, mode=mode, **kwargs)


def symlink(name: str, target: str) -> Entry:
    """A symbolic link entry."""
    return Entry(name, tarfile.SYMTYPE, mode=0o777, linkname=target)


def busybox_entries(with_etc: bool = True) -> list[Entry]:
    """The rootfs of a minimal busybox image: /bin/busybox, applet links, /etc files."""
    entries = [directory("rootfs"), directory("rootfs/bin")]
    entries.append(Entry("rootfs/bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755))
    entries += [symlink(f"rootfs/bin/{applet}", "busybox") for applet in APPLETS]
    if with_etc:
        entries += [
            directory("rootfs/etc"),
            Entry("rootfs/etc/passwd", data=PASSWD.encode()),
            Entry("rootfs/etc/group", data=GROUP.encode()),
        ]
    return entries


def manifest(
    app: Mapping[str, Any] | None,
    *,
    name: str = "test/busybox",
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An appc image manifest for a test image."""
    document: dict[str, Any] = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
    }
    if app is not None:
        document["app"] = dict(app)
    if annotations:
        document["annotations"] = [{"name": k, "value": v} for k, v in annotations.items()]
    return document


def write_aci(
    path: Path,
    entries: Iterable[Entry],
    manifest_doc: Mapping[str, Any] | None,
    *,
    compression: str = "gz",
) -> Path:
    """Write an ACI: ``manifest`` (unless ``None``) then ``entries``."""
    mode = f"w:{compression}"  # "gz", "bz2", "xz" or "" (plain)
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as archive:  # type: ignore[call-overload]
        if manifest_doc is not None:
            Entry("manifest", data=json.dumps(manifest_doc).encode()).add_to(archive)
        for entry in entries:
            entry.add_to(archive)
    return path


def children_running(parent_pid: int, program: bytes) -> list[int]:
    """The pids of ``parent_pid``'s children whose command line has the word ``program``
    (an app the runner started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if stat.rsplit(") ", 1)[1].split()[1] == str(parent_pid) and program in cmdline.split(b"\0"):
                found.append(int(entry.name))
    return found


SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
"""Where the runtimes are looked for (``sbin`` is often not in a user's PATH)."""
RUNC = shutil.which("runc", path=SEARCH_PATH)
CRUN = shutil.which("crun", path=SEARCH_PATH)
RUNC_MARKS = [
    pytest.mark.skipif(RUNC is None, reason="runc is not installed (apt-get install runc)"),
    pytest.mark.skipif(not root_is_mount_point(),
                       reason="/ is not a mount point here (a chroot): runc cannot start containers"),
]
"""Skip marks of a test that starts containers with runc."""

ACTOOL = shutil.which("actool")
"""Debian appc-spec's actool, which builds ACIs from image layouts (None when missing)."""


def actool_build(out: Path, manifest_doc: Mapping[str, Any], files: Mapping[str, bytes | str], *,
                 mode: int | None = None) -> Path:
    """An ACI made by ``actool build --owner-root`` from an image layout written beside
    ``out`` (``manifest`` + ``rootfs/`` holding ``files``, each made ``mode`` if given)."""
    assert ACTOOL is not None
    layout = Path(tempfile.mkdtemp(prefix=f".layout-{out.stem}-", dir=out.parent))
    (layout / "rootfs").mkdir()
    (layout / "manifest").write_text(json.dumps(manifest_doc))
    for rel, content in files.items():
        path = layout / "rootfs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        if mode is not None:
            path.chmod(mode)
    subprocess.run([ACTOOL, "build", "--owner-root", "--overwrite", str(layout), str(out)], check=True,
                   capture_output=True)
    shutil.rmtree(layout)
    return out


#: ``build_aci(app, *, extra=(), with_etc=True, annotations=None) -> Path`` (a fixture).
BuildAci = Callable[..., Path]

#: ``run_app(aci, args=None, exec_override=None) -> CompletedProcess`` (a fixture).
RunApp = Callable[..., "subprocess.CompletedProcess[str]"]


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
"""The prefix that runs a command as ``nobody`` (util-linux ``setpriv``)."""


def as_nobody(script: str) -> subprocess.CompletedProcess[str]:
    """Run a Python ``script`` as ``nobody`` with the project importable, or skip the test
    when the project or the interpreter cannot be read by that user here."""
    import sys

    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import runner"], cwd=PROJECT_ROOT, capture_output=True,
                           check=False)
    if probe.returncode != 0:
        pytest.skip("the project or the interpreter is not readable by nobody here")
    return subprocess.run([*NOBODY, sys.executable, "-c", f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
                           + script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)

