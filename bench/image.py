"""The benchmark images, built with the real tools and cached.

:func:`bench_image` returns the 3-layer benchmark image, building it on first use:

1. ``debootstrap --variant=minbase bookworm`` (:func:`fixtures.debian.build_bookworm_layout`);
2. ``python3`` and ``ca-certificates`` installed with apt-get in a chroot (``/proc`` and
   ``/dev`` bind-mounted inside ``unshare --mount``, so nothing leaks), apt lists cleaned;
3. ``/usr/share/{doc,man,locale}`` deleted; the Python standard library copied to
   ``/opt/stdlib-copy``; a hard link, a symlink, a setuid file and a 250-character path.

Each layer is an ``umoci repack`` (gzip). The cache entry (``image-v<N>-umoci<ver>/``
under :func:`cache_root`) holds the OCI layout (``layout/``, tag ``latest``), the same
image as a docker-archive with uncompressed layers (``image.tar``, written by skopeo), a
tar of the final root file system (``squashed.tar``, for the floor) and ``stats.json``
(layer sizes, path count, build timings).

:func:`large_image` (``--large``) is layer 1 plus one layer of ~2 GiB of incompressible
random files, kept only as a docker-archive.

Entries are built in a ``.tmp-<name>-*`` directory and renamed into place while holding
an ``flock`` on ``<name>.lock``, so two benchmarks wait for one build. Bump
:data:`IMAGE_VERSION` when what is built changes. Needs root and debootstrap, umoci,
skopeo, tar, zstd, unshare, chroot, mount.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from fixtures.builders import FixtureBuildError, build_docker_archive, private_mounts, run_tool
from fixtures.debian import BOOKWORM_PATH, _locked, build_bookworm_layout, missing_bookworm_tools

#: Bump when the image built here changes: older cache entries are then ignored.
IMAGE_VERSION = 1
REF = "bench/image:latest"
TAG = "latest"
CREATED = "2023-11-14T22:13:20Z"
LARGE_FILES = 64
LARGE_FILE_MB = 32
TOOLS = ("umoci", "skopeo", "tar", "unshare", "chroot", "mount")


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/docker2aci-bench``, else ``~/.cache/docker2aci-bench``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "docker2aci-bench"


def missing_tools() -> list[str]:
    """The tools the image build needs that are not installed."""
    sbin = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return sorted(set(missing_bookworm_tools()) | {t for t in TOOLS if not shutil.which(t, path=sbin)})


def _log(msg: str) -> None:
    print(f"[image] {msg}", file=sys.stderr, flush=True)


def _umoci_version() -> str:
    out = run_tool(["umoci", "--version"]).strip().rsplit(" ", 1)[-1]
    return "".join(c if c.isalnum() or c == "." else "_" for c in out)


def _cached(name: str, build) -> Path:  # build(tmp_dir) -> None, fills tmp_dir
    """The cache entry ``name``: built by ``build(tmp)`` into a temp dir, then renamed."""
    root = cache_root()
    final = root / name
    if (final / "stats.json").is_file():
        return final
    with _locked(root, name):
        if (final / "stats.json").is_file():  # built by another process while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
        try:
            build(tmp / "entry", tmp)
            os.rename(tmp / "entry", final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


class _Timer:
    """Records how long each named build step takes (and logs it)."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    def step(self, name: str, fn, *args, **kwargs):
        t0 = time.monotonic()
        result = fn(*args, **kwargs)
        self.steps[name] = round(time.monotonic() - t0, 2)
        _log(f"{name}: {self.steps[name]:.1f} s")
        return result


# --------------------------------------------------------------------------- the image


def _apt_install(rootfs: Path) -> None:
    """apt-get install python3 ca-certificates in ``rootfs`` (a private mount namespace)."""
    resolv = rootfs / "etc" / "resolv.conf"
    saved = resolv.read_bytes() if resolv.is_file() and not resolv.is_symlink() else None
    if resolv.exists() or resolv.is_symlink():
        resolv.unlink()
    shutil.copyfile("/etc/resolv.conf", resolv)
    apt = ("apt-get update -q && apt-get install -y -q --no-install-recommends python3 ca-certificates"
           " && apt-get clean && rm -rf /var/lib/apt/lists/*")
    script = ('mount --bind /proc "$1/proc" && mount --bind /dev "$1/dev" && '
              'exec chroot "$1" /usr/bin/env -i PATH="$2" DEBIAN_FRONTEND=noninteractive LC_ALL=C sh -ec "$3"')
    try:
        run_tool([*private_mounts("sh", "-ec", script), "sh",
                  rootfs, BOOKWORM_PATH, apt])
    finally:
        resolv.unlink(missing_ok=True)
        if saved is not None:
            resolv.write_bytes(saved)


def _layer3(rootfs: Path) -> None:
    """Delete docs, copy the stdlib, add a hard link, symlink, setuid file and long path."""
    for d in ("usr/share/doc", "usr/share/man", "usr/share/locale"):
        shutil.rmtree(rootfs / d, ignore_errors=True)
    [stdlib] = (rootfs / "usr/lib").glob("python3.[0-9]*")
    run_tool(["cp", "-a", stdlib, rootfs / "opt/stdlib-copy"])
    os.link(rootfs / "opt/stdlib-copy/os.py", rootfs / "opt/hardlink-to-os.py")
    os.symlink("/usr/bin/python3", rootfs / "opt/python")
    shutil.copy2(rootfs / "usr/bin/true", rootfs / "opt/setuid-true")
    os.chmod(rootfs / "opt/setuid-true", 0o4755)
    long_dir = "opt/long/" + "/".join(c * 50 for c in "abcd")
    long_path = f"{long_dir}/" + "f" * (250 - len(long_dir) - 1)
    assert len(long_path) == 250
    (rootfs / long_dir).mkdir(parents=True)
    (rootfs / long_path).write_text("a 250-character path\n")


def _repack(layout: Path, bundle: Path, created_by: str) -> None:
    run_tool(["umoci", "repack", "--refresh-bundle", "--history.created", CREATED,
              "--history.created_by", created_by, "--image", f"{layout}:{TAG}", bundle])


def _tar_stats(archive: Path) -> dict:
    """Layers (compressed/uncompressed bytes, entries) of a docker-archive written by skopeo."""
    with tarfile.open(archive) as outer:
        [manifest] = json.loads(outer.extractfile("manifest.json").read())  # type: ignore[union-attr]
        layers = []
        for name in manifest["Layers"]:
            member = outer.getmember(name)
            with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                entries = sum(1 for _ in layer)
            layers.append({"bytes": member.size, "entries": entries})
    return {"layers": layers, "uncompressed_bytes": sum(x["bytes"] for x in layers)}


def _build_image(entry: Path, work: Path) -> None:
    timer = _Timer()
    t0 = time.monotonic()
    entry.mkdir()
    layout, bundle = entry / "layout", work / "bundle"
    rootfs = bundle / "rootfs"
    timer.step("layer 1: debootstrap layout (fixtures.debian)", build_bookworm_layout, layout,
               cache_dir=cache_root() / "debian")
    timer.step("umoci unpack", run_tool, ["umoci", "unpack", "--image", f"{layout}:{TAG}", bundle])
    timer.step("layer 2: apt-get install python3 ca-certificates", _apt_install, rootfs)
    timer.step("layer 2: umoci repack", _repack, layout, bundle,
               "apt-get install --no-install-recommends python3 ca-certificates")
    timer.step("layer 3: edit tree", _layer3, rootfs)
    timer.step("layer 3: umoci repack", _repack, layout, bundle,
               "rm -rf /usr/share/{doc,man,locale}; cp -a stdlib /opt/stdlib-copy; links, setuid, long path")
    timer.step("umoci gc", run_tool, ["umoci", "gc", "--layout", layout])
    timer.step("squashed.tar", run_tool, ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*",
                                          "-C", rootfs, "-cf", entry / "squashed.tar", "."])
    timer.step("docker-archive (skopeo)", build_docker_archive, layout, entry / "image.tar", ref=REF)
    stats = timer.step("stats", _tar_stats, entry / "image.tar")
    with tarfile.open(entry / "squashed.tar") as squashed:
        stats["paths"] = sum(1 for m in squashed if m.name not in (".", "./"))
    stats["gzip_layer_bytes"] = sum(p.stat().st_size for p in _layer_blobs(layout))
    stats["build_seconds"] = round(time.monotonic() - t0, 1)
    stats["build_steps"] = timer.steps
    subprocess.run(["chmod", "-R", "a+rX", entry], check=True)
    (entry / "stats.json").write_text(json.dumps(stats, indent=1))


def _layer_blobs(layout: Path) -> list[Path]:
    """The layer blobs of the layout's ``latest`` image, in order."""
    index = json.loads((layout / "index.json").read_text())
    [desc] = [m for m in index["manifests"]
              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == TAG]
    blob = lambda d: layout / "blobs" / Path(*d["digest"].split(":", 1))
    manifest = json.loads(blob(desc).read_text())
    return [blob(layer) for layer in manifest["layers"]]


class Image:
    """A cached benchmark image: ``layout``, ``archive``, ``squashed`` and ``stats``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.layout = path / "layout"
        self.archive = path / "image.tar"
        self.squashed = path / "squashed.tar"
        self.stats = json.loads((path / "stats.json").read_text())

    @property
    def layer_blobs(self) -> list[Path]:
        return _layer_blobs(self.layout)


def _check() -> None:
    if os.geteuid() != 0:
        raise FixtureBuildError("the benchmark image needs root (debootstrap, chroot, umoci unpack)")
    missing = missing_tools()
    if missing:
        raise FixtureBuildError(f"missing tool(s): {', '.join(missing)} (bash scripts/setup.sh installs them)")


def bench_image() -> Image:
    """The 3-layer benchmark image, built (a few minutes) if it is not cached."""
    _check()
    return Image(_cached(f"image-v{IMAGE_VERSION}-umoci{_umoci_version()}", _build_image))


# --------------------------------------------------------------------------- --large


def _build_large(entry: Path, work: Path) -> None:
    timer = _Timer()
    t0 = time.monotonic()
    entry.mkdir()
    layout, bundle = work / "layout", work / "bundle"
    timer.step("layer 1: debootstrap layout (fixtures.debian)", build_bookworm_layout, layout,
               cache_dir=cache_root() / "debian")
    timer.step("umoci unpack", run_tool, ["umoci", "unpack", "--image", f"{layout}:{TAG}", bundle])

    def random_files() -> None:
        target = bundle / "rootfs/opt/random"
        target.mkdir(parents=True)
        for i in range(LARGE_FILES):
            with open(target / f"{i:03d}.bin", "wb") as f:
                f.writelines(os.urandom(1 << 20) for _ in range(LARGE_FILE_MB))

    timer.step(f"layer 2: {LARGE_FILES} x {LARGE_FILE_MB} MiB random files", random_files)
    timer.step("layer 2: umoci repack", _repack, layout, bundle, "random files")
    timer.step("docker-archive (skopeo)", build_docker_archive, layout, entry / "image.tar", ref="bench/large:latest")
    stats = timer.step("stats", _tar_stats, entry / "image.tar")
    stats["build_seconds"] = round(time.monotonic() - t0, 1)
    stats["build_steps"] = timer.steps
    (entry / "stats.json").write_text(json.dumps(stats, indent=1))


def large_image() -> Path:
    """A docker-archive of layer 1 + ~2 GiB of random files (built if not cached)."""
    _check()
    name = f"large-v{IMAGE_VERSION}-{LARGE_FILES}x{LARGE_FILE_MB}-umoci{_umoci_version()}"
    return _cached(name, _build_large) / "image.tar"
