"""Benchmark docker2aci on a real Debian image (280 MB of layers): ``python -m bench`` (see README.md).

Every case is a fresh child process in a fresh work directory; each is run ``--runs``
times and reported as medians of wall time, CPU time (user+sys of the child and its
descendants, from :func:`os.wait4`), peak RSS (the largest single process of the tree)
and output size, next to baselines measured in the same run. Prints a table; writes
JSON (default ``bench/results/latest.json``).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/run.py`
    sys.path.insert(0, str(REPO))

from bench.image import Image, bench_image, cache_root, large_image
from fixtures.builders import FixtureBuildError
from tests.services import push, run_registry

#: The project's development interpreter (its venv when there is one), where docker2aci
#: is an editable install.
DEV_PY = str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists() else sys.executable
#: The interpreter of the children: a regular install of the work tree, as a user's
#: (:func:`install_release`, which sets these two); until then the development one.
PY = DEV_PY
D2A = [PY, "-m", "docker2aci"]
#: Where the children run: outside the work tree, whose packages would otherwise come
#: first on ``python -m``'s path (:func:`install_release` sets it).
CHILD_CWD: str | None = None
PACKAGES = ("docker2aci", "converters", "runner")
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
#: The children's environment: bytecode cached (as for an installed tool, whatever this
#: shell says), in the benchmark's cache so the work tree stays clean.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(cache_root() / "pycache")
CHILD_ENV["PATH"] = SBIN_PATH  # chroot, runc: a non-login root shell may lack the sbin dirs
TOOLS = ("skopeo", "umoci", "pigz", "docker-registry", "tar", "chroot", "bash")
REPO_NAME = "bench/image:latest"


class BenchError(RuntimeError):
    """A case or a baseline failed, or the machine lacks what the benchmark needs."""


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    """One run: wall time (to the first output line when the case waits for one), CPU
    seconds, peak RSS (MB), output size (MB) and the wall time to exit."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    output_mb: float | None
    exit_s: float


def _become_subreaper() -> None:
    """Make orphaned descendants our children (``PR_SET_CHILD_SUBREAPER``), see :func:`measure`."""
    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
        raise BenchError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def measure(argv: list[str], out: Path | None, first_line: str | None = None) -> Sample:
    """Run ``argv`` once; ``out`` is the directory whose size is the output.

    The command is started by ``sh -c '"$@" &'``, not forked from this process: a child
    inherits its parent's peak RSS through fork+exec (ours is ~35 MB, which would be
    every small command's "peak"), while one forked from sh starts at ~1 MB. sh tells us
    the command's PID and exits; the command, orphaned, is reparented to us (we are a
    subreaper) and :func:`os.wait4` gives its own rusage and that of its descendants.
    """
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as pid_file:
        t0 = time.perf_counter()
        # $0 is the pid file: sh writes the command's PID there and exits
        sh = subprocess.Popen(["sh", "-c", '"$@" & echo $! >"$0"', pid_file.name, *argv],
                              stdin=subprocess.DEVNULL, stderr=err, env=CHILD_ENV, cwd=CHILD_CWD,
                              stdout=subprocess.PIPE if first_line is not None else subprocess.DEVNULL)
        sh.wait()
        pid = int(pid_file.read())
        try:
            line, first = "", None
            if sh.stdout is not None:
                line = sh.stdout.readline().decode(errors="replace").strip()
                first = time.perf_counter() - t0
                sh.stdout.read()
                sh.stdout.close()
            _, status, usage = os.wait4(pid, 0)
        except BaseException:  # interrupted: do not leave the command running
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        exit_s = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code != 0 or (first_line is not None and line != first_line):
            err.seek(0)
            tail = err.read()[-3000:].decode(errors="replace")
            raise BenchError(f"{shlex.join(argv)}\nexited {code}, first line {line!r}:\n{tail}")
    size = None
    if out is not None:
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6
    return Sample(first if first is not None else exit_s, usage.ru_utime + usage.ru_stime,
                  usage.ru_maxrss / 1024, size, exit_s)


FLOOR = "floor: sha256 blobs; sha512 + gzip of the squashed tar"
ARCHIVE_FLOOR = "floor: sha256 archive layers; sha512 + gzip of the squashed tar"


@dataclass
class Case:
    """What to run: ``argv(work)`` in a fresh ``work`` dir; the output is ``work/out``.

    ``vs`` names the baseline (besides the floor) the case is compared with, as a ratio of
    wall times, or as the difference in seconds when ``vs_diff`` (what the case adds to
    it); ``label`` is how a baseline is named in that column.
    """

    name: str
    argv: Callable[[Path], list[str]]
    baseline: bool = False
    label: str = ""
    first_line: str | None = None
    has_output: bool = True
    vs: str | None = None
    vs_diff: bool = False
    floor: bool = True  # compare with the floor (its output is of the benchmark image)
    own_floor: str = FLOOR  # the floor that hashes the layer bytes this case's source holds
    note: str = ""
    samples: list[Sample] = field(default_factory=list)

    def run_once(self, tmp: Path) -> None:
        """One measured run in a fresh work dir (removed after)."""
        work = Path(tempfile.mkdtemp(prefix="work-", dir=tmp))
        try:
            (work / "out").mkdir()
            self.samples.append(measure(self.argv(work), work / "out" if self.has_output else None,
                                        self.first_line))
        finally:
            _remove(work)

    def result(self) -> dict:
        """Medians, the command and every sample, JSON-ready."""
        median = lambda k: statistics.median(getattr(s, k) for s in self.samples)
        return {"case": self.name, "baseline": self.baseline, "command": shlex.join(self.argv(Path("$WORK"))),
                "note": self.note, "vs": self.vs, "vs_diff": self.vs_diff, "vs_floor": self.floor and self.has_output,
                "own_floor": self.own_floor,
                **{k: round(median(k), 3) for k in ("wall_s", "cpu_s", "peak_rss_mb", "exit_s")},
                "output_mb": round(median("output_mb"), 1) if self.has_output else None,
                "samples": [vars(s) for s in self.samples]}


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(prefix)]


def _remove(path: Path) -> None:
    """``rm -rf path``, unless something is still mounted below it (then say so, keep it)."""
    mounted = _mounts_under(path)
    if mounted:
        print(f"bench: warning: not removing {path}: still mounted: {mounted}", file=sys.stderr)
        return
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- cases

PIPELINE = "user: skopeo copy + umoci unpack + tar | pigz"
CHROOT = "chroot ROOTFS /bin/echo hi"
STARTUP = "interpreter start-up: python -c pass"
WARM = "registry, warm cache, unchanged -> ACI"


def _d2a(*args: str | Path) -> Callable[[Path], list[str]]:
    """A conversion: ``docker2aci --no-cache --cache-dir WORK/cache --output-dir WORK/out ARGS``."""
    return lambda w: [*D2A, "--no-cache", "--cache-dir", str(w / "cache"), "--output-dir", str(w / "out"),
                      *map(str, args)]


def conversion_cases(image: Image, host: str, warm_cache: Path) -> list[Case]:
    """The baselines (floor, a user's pipeline) and the conversion cases."""
    ref = f"docker://{host}/{REPO_NAME}"
    pipeline = ("set -euo pipefail; W=$1\n"
                f"skopeo copy --quiet --insecure-policy --src-tls-verify=false {ref} oci:$W/layout:latest\n"
                "umoci unpack --image $W/layout:latest $W/bundle\n"
                "tar -C $W/bundle -c rootfs | pigz > $W/out/rootfs.tar.gz")
    return [
        Case(FLOOR, baseline=True, label="floor",
             argv=lambda w: [PY, str(REPO / "bench/floor.py"), str(w / "out/floor.tar.gz"), str(image.squashed),
                             *map(str, image.layer_blobs)],
             note="bench/floor.py: no decompression, no tar parsing; isal gzip at docker2aci's default level "
                  "and threads"),
        Case(ARCHIVE_FLOOR, baseline=True, label="archive floor", own_floor=ARCHIVE_FLOOR,
             argv=lambda w: [PY, str(REPO / "bench/floor.py"), str(w / "out/floor.tar.gz"), str(image.squashed),
                             "--archive", str(image.archive)],
             note="the floor for the docker-archive cases: the layer bytes that source holds are its "
                  "280 MB of uncompressed layer tars, checked against the diff IDs"),
        Case(PIPELINE, baseline=True, label="user pipeline",
             argv=lambda w: ["bash", "-c", pipeline, "bash", str(w)],
             note="from the registry; pigz level 6 on every core"),
        Case(STARTUP, baseline=True, label="start-up", argv=lambda w: [PY, "-c", "pass"], has_output=False,
             note="the interpreter docker2aci runs under, importing nothing"),
        Case("archive -> ACI", _d2a(f"docker-archive:{image.archive}"), vs=PIPELINE, own_floor=ARCHIVE_FLOOR),
        Case("OCI layout -> ACI", _d2a(f"oci:{image.layout}:latest")),
        Case("registry, cold cache -> ACI",
             lambda w: [*D2A, "--cache-dir", str(w / "cache"), "--output-dir", str(w / "out"),
                        "--insecure-allow-http", ref], vs=PIPELINE, note="a new --cache-dir each run"),
        Case(WARM,
             lambda w: [*D2A, "--cache-dir", str(warm_cache), "--output-dir", str(w / "out"),
                        "--insecure-allow-http", ref],
             vs=STARTUP, vs_diff=True, note="the --cache-dir was filled by one conversion before the timed runs"),
        Case("archive -> ACI, --compression none", _d2a("--compression", "none", f"docker-archive:{image.archive}"),
             own_floor=ARCHIVE_FLOOR),
        Case("archive -> per-layer ACIs, --nosquash", _d2a("--nosquash", f"docker-archive:{image.archive}"),
             own_floor=ARCHIVE_FLOOR, note="one ACI per layer (3), 280 MB of layers written instead of the 157 MB squashed tree"),
    ]


def run_cases(aci: Path, cache: Path, tree: Path, stages: list[str]) -> list[Case]:
    """``run`` of a cached image to its first output line, per stage, and the chroot baseline."""
    cases = [Case(CHROOT, lambda w: ["chroot", str(tree / "rootfs"), "/bin/echo", "hi"], baseline=True,
                  label="chroot", first_line="hi", has_output=False,
                  note="in the tree docker2aci rendered: no namespaces, no pod")]
    for stage in stages:
        argv = [*D2A, "run", "--stage", stage, "--insecure-options=image", "--cache-dir", str(cache), str(aci),
                "--exec", "/bin/echo hi"]
        cases.append(Case(f"run --stage {stage}: echo hi (to 1st line)", functools.partial(_fixed, argv),
                          first_line="hi", has_output=False, vs=CHROOT, vs_diff=True,
                          note="tree store warm (one run before); exit_s: to the exit"))
    return cases


def _fixed(argv: list[str], work: Path) -> list[str]:
    return argv


def _check_call(argv: list[str]) -> str:
    done = subprocess.run(argv, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=CHILD_ENV,
                          cwd=CHILD_CWD)
    if done.returncode != 0:
        raise BenchError(f"{shlex.join(argv)}\nexited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def prepare_run(image: Image, tmp: Path, stages: list[str]) -> tuple[Path, Path, Path]:
    """Convert the image once, run it once per stage (warming the tree store), and find
    the rendered tree. Returns ``(aci, cache_dir, tree_dir)``."""
    cache, out = tmp / "run-cache", tmp / "run-aci"
    out.mkdir()
    _check_call([*D2A, "--no-cache", "--cache-dir", str(cache), "--output-dir", str(out),
                 f"docker-archive:{image.archive}"])
    [aci] = out.glob("*.aci")
    for stage in stages:
        _check_call([*D2A, "run", "--stage", stage, "--insecure-options=image", "--cache-dir", str(cache),
                     str(aci), "--exec", "/bin/echo hi"])
    fetched = _check_call([*D2A, "fetch", "--json", "--insecure-options=image", "--cache-dir", str(cache), str(aci)])
    return aci, cache, Path(json.loads(fetched.splitlines()[-1])["path"])


REFGZIP_SOURCE = REPO / "bench/refgzip.go"
PGZIP_SOURCE = Path("/usr/share/gocode/src/github.com/klauspost/pgzip")
"""Debian's golang-github-klauspost-pgzip-dev: the gzip writer of the reference tool."""


def build_refgzip() -> Path | str:
    """The reference tool's gzip writer as a command (``bench/refgzip.go``: pgzip at its
    default level, as appc/docker2aci 0.17.2 writes a squashed ACI), built with Debian's Go
    and pgzip and cached; or why it cannot be built here."""
    go = shutil.which("go")
    if go is None or not PGZIP_SOURCE.is_dir():
        return "Go or Debian's pgzip is not installed (bash scripts/setup.sh --bench)"
    version = subprocess.run([go, "version"], check=False, capture_output=True, text=True).stdout
    key = hashlib.sha256(REFGZIP_SOURCE.read_bytes() + version.encode()).hexdigest()[:16]
    built = cache_root() / f"refgzip-{key}"
    if not built.exists():
        built.parent.mkdir(parents=True, exist_ok=True)
        part = built.with_name(f".{built.name}.{os.getpid()}")
        env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOFLAGS": "",
               "GOCACHE": str(cache_root() / "gocache")}
        done = subprocess.run([go, "build", "-o", str(part), REFGZIP_SOURCE.name], cwd=REFGZIP_SOURCE.parent,
                              env=env, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            return f"building {REFGZIP_SOURCE.name} failed: {done.stderr.strip()[-500:]}"
        os.replace(part, built)
    return built


def reference_gzip_size(aci: Path, refgzip: Path) -> int:
    """Bytes the reference tool's gzip writer makes of the ACI's own uncompressed tar."""
    unzip = subprocess.Popen(["gzip", "-dc", str(aci)], stdout=subprocess.PIPE)
    ref = subprocess.Popen([str(refgzip)], stdin=unzip.stdout, stdout=subprocess.PIPE)
    assert unzip.stdout is not None and ref.stdout is not None
    unzip.stdout.close()  # ref holds it now
    size = 0
    while chunk := ref.stdout.read(1 << 20):
        size += len(chunk)
    if ref.wait() != 0 or unzip.wait() != 0:
        raise BenchError(f"gzip -dc {aci} | {refgzip} failed")
    return size


def size_report(aci: Path) -> tuple[dict | None, str]:
    """The ACI's size against the reference tool's compressor on the same tar (``None``
    when that cannot be built here), and a line for the report."""
    refgzip = build_refgzip()
    ours = aci.stat().st_size
    if isinstance(refgzip, str):
        return None, f"size: the ACI is {ours / 1e6:.2f} MB; no reference size: {refgzip}"
    try:
        theirs = reference_gzip_size(aci, refgzip)
    except BenchError as err:  # the size reference is a note: it never stops the timed cases
        return None, f"size: the ACI is {ours / 1e6:.2f} MB; no reference size: {err}"
    ratio = ours / theirs
    return ({"aci_bytes": ours, "reference_gzip_bytes": theirs, "ratio": round(ratio, 3)},
            f"size: the ACI (default options) is {ours / 1e6:.2f} MB; the reference tool's gzip writer (pgzip, "
            f"default level) makes {theirs / 1e6:.2f} MB of the same tar: {ratio:.3f} × (target ≤ 1.05 ×)")


def isolated_skip_reason() -> str | None:
    """Why the isolated stage cannot be measured here, or ``None``."""
    if not shutil.which("runc", path=SBIN_PATH):
        return "runc is not installed"
    if not os.path.ismount("/"):
        return "/ is not a mount point"
    return None


# --------------------------------------------------------------------------- report


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, check=False, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "missing"


def machine_info() -> dict:
    """CPU, cores, kernel, Python and tool versions, and the commit measured."""
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                   platform.processor())
    git = lambda *a: subprocess.run(["git", "-C", str(REPO), *a], check=False, capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": _version([PY, "--version"]), "skopeo": _version(["skopeo", "--version"]),
            "umoci": _version(["umoci", "--version"]), "pigz": _version(["pigz", "--version"]),
            "runc": _version(["runc", "--version"]), "load_avg_at_start": os.getloadavg(),
            "commit": git("log", "-1", "--oneline"),
            "uncommitted_changes": bool(git("status", "--porcelain", "--", "docker2aci", "converters", "runner"))}


def selected(cases: list[Case], only: list[str] | None) -> list[Case]:
    """The floors, the start-up, and the cases whose name contains one of ``only`` (a case
    whose other baseline is left out gets no ratio to it); every case when ``only`` is ``None``."""
    return [c for c in cases if only is None or c.name in (FLOOR, ARCHIVE_FLOOR, STARTUP)
            or any(text in c.name for text in only)]


def _round_ratios(case: dict, floor: dict) -> list[float]:
    """Each round's wall time of ``case`` over the floor's in the same round (rounds run
    every case once, one after the other, so a load spike hits both of a pair)."""
    return [round(c["wall_s"] / f["wall_s"], 2) for c, f in zip(case["samples"], floor["samples"])]


def add_ratios(results: list[dict], cases: list[Case]) -> None:
    """``x_floor``: wall / the blob floor's (medians), and ``x_floor_rounds``: the same ratio
    for each round; ``x_own_floor``: wall / the floor of the case's own source (the
    archive floor for docker-archive cases); ``vs_ratio``, ``vs_diff_s``: against its other baseline."""
    by_name = {r["case"]: r for r in results}
    labels = {c.name: c.label for c in cases}
    for r in results:
        r["x_floor"] = round(r["wall_s"] / by_name[FLOOR]["wall_s"], 2) if r["vs_floor"] else None
        r["x_floor_rounds"] = _round_ratios(r, by_name[FLOOR]) if r["vs_floor"] else None
        own = by_name.get(r["own_floor"])
        r["x_own_floor"] = round(r["wall_s"] / own["wall_s"], 2) if r["vs_floor"] and own else None
        if r["vs"] in by_name:
            other = by_name[r["vs"]]["wall_s"]
            r["vs_ratio"] = round(r["wall_s"] / other, 2)
            r["vs_diff_s"] = round(r["wall_s"] - other, 3)
            r["vs_label"] = labels[r["vs"]]


def _secs(x: float) -> str:
    return f"{x:.3f}" if x < 0.1 else f"{x:.2f}"


def _vs(r: dict) -> str:
    if not r.get("vs_label"):
        return ""
    if r["vs_diff"]:
        return f"{r['vs_diff_s']:+.2f} s over {r['vs_label']}"
    return f"{r['vs_ratio']:.2f} × {r['vs_label']}"


def table(results: list[dict]) -> str:
    """The results as a fixed-width text table."""
    rows = [("case", "wall s", "cpu s", "peak RSS MB", "output MB", "×floor", "(rounds)", "×own floor",
             "× other baseline")]
    ratio = lambda x: "-" if x is None else f"{x:.2f}"
    spread = lambda xs: "" if not xs or len(xs) < 2 or r["baseline"] else f"{min(xs):.2f}–{max(xs):.2f}"
    for r in results:
        rows.append(("[baseline] " * r["baseline"] + r["case"], _secs(r["wall_s"]), _secs(r["cpu_s"]),
                     f"{r['peak_rss_mb']:.0f}", "-" if r["output_mb"] is None else f"{r['output_mb']:.1f}",
                     ratio(r["x_floor"]), spread(r.get("x_floor_rounds")), ratio(r["x_own_floor"]), _vs(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    fmt = lambda row: "  ".join(c.ljust(w) if i in (0, 8) else c.rjust(w)
                                for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return "\n".join([fmt(rows[0]), fmt(tuple("-" * w for w in widths)), *map(fmt, rows[1:])])


def image_summary(stats: dict) -> str:
    """One line: layers, sizes, paths and build time of the benchmark image."""
    layers = ", ".join(f"{x['bytes'] / 1e6:.0f} MB/{x['entries']} entries" for x in stats["layers"])
    return (f"image: {len(stats['layers'])} layers ({layers}); {stats['uncompressed_bytes'] / 1e6:.0f} MB "
            f"uncompressed, {stats['gzip_layer_bytes'] / 1e6:.0f} MB gzip; {stats['paths']} paths squashed; "
            f"built in {stats['build_seconds']:.0f} s")


# --------------------------------------------------------------------------- main


def check_machine() -> None:
    """Raise :class:`BenchError` naming whatever is missing."""
    if os.geteuid() != 0:
        raise BenchError("run the benchmark as root (image build, chroot, run stages)")
    missing = [t for t in TOOLS if not shutil.which(t, path=SBIN_PATH)]
    if missing:
        raise BenchError(f"missing tool(s): {', '.join(missing)}: bash scripts/setup.sh installs them")
    probe = subprocess.run([DEV_PY, "-c", "import docker2aci, isal"], check=False, capture_output=True, text=True)
    if probe.returncode != 0:
        raise BenchError(f"{DEV_PY} cannot import docker2aci and isal (bash scripts/setup.sh; "
                         f".venv/bin/pip install isal):\n{probe.stderr.strip()}")


def install_release(tmp: Path) -> bool:
    """Install the work tree as a user's ``pip install`` would, in a virtual environment of
    its own under ``tmp``, and make it the children's interpreter (:data:`PY`, :data:`D2A`).

    The development venv holds docker2aci as an *editable* install, whose import hook
    (imported by every interpreter start, with ``pathlib``) costs 15-30 ms per command:
    not what a user's installed tool pays. Here the packages are copied into the new
    venv's site-packages, and the dependencies come from the development venv's
    site-packages through a ``.pth`` line (a path: its own ``.pth`` files, the editable
    hook among them, are not read). The floor runs under the same interpreter.

    The children then run in ``tmp`` (:data:`CHILD_CWD`), where no copy of the packages is.

    Returns:
        whether the C tar-header codec (``converters._tarheader``) is in use there: it is
        copied with the packages when ``pip install -e .`` built it in the work tree.
    """
    global PY, D2A, CHILD_CWD
    venv = tmp / "release-venv"
    subprocess.run([DEV_PY, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps = subprocess.run([DEV_PY, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    for package in PACKAGES:
        shutil.copytree(REPO / package, Path(site, package), ignore=shutil.ignore_patterns("__pycache__"))
    Path(site, "docker2aci-bench-deps.pth").write_text(deps + "\n")
    subprocess.run([python, "-m", "compileall", "-q", *(str(Path(site, p)) for p in PACKAGES)],  # as pip does
                   check=True, capture_output=True, env=CHILD_ENV)
    probe = subprocess.run([python, "-c", "import docker2aci, runner, isal, requests; from converters import native; "
                            "print(docker2aci.__file__); print(native.tarheader is not None)"],
                           check=False, capture_output=True, text=True, cwd=tmp)
    if probe.returncode != 0 or not probe.stdout.startswith(site):
        raise BenchError(f"the release install in {venv} does not work:\n{probe.stdout}{probe.stderr}")
    PY, D2A, CHILD_CWD = python, [python, "-m", "docker2aci"], str(tmp)
    return probe.stdout.split()[-1] == "True"


def main(argv: list[str] | None = None) -> int:
    """The command line: ``python -m bench [--runs N] [--large] [--json PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per case; medians are reported (default 3)")
    parser.add_argument("--large", action="store_true", help="also convert a ~2 GiB image (built and cached once)")
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/latest.json",
                        help="where to write the JSON report (default bench/results/latest.json)")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="run only the cases whose name contains TEXT (repeatable), with the two floors "
                             "and the start-up; other baselines only if named")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the registry, remove temp dirs
    try:
        return _bench(args)
    except (BenchError, FixtureBuildError, RuntimeError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1


def _bench(args: argparse.Namespace) -> int:
    check_machine()
    _become_subreaper()
    machine = machine_info()
    t0 = time.monotonic()
    image = bench_image()
    image_ready_s = round(time.monotonic() - t0, 2)
    print(f"image ready in {image_ready_s:.1f} s ({image.path})", file=sys.stderr)
    large = large_image() if args.large else None
    skip_isolated = isolated_skip_reason()
    stages = ["fly"] if skip_isolated else ["fly", "isolated"]
    notes = [f"isolated stage skipped: {skip_isolated}"] if skip_isolated else []
    with tempfile.TemporaryDirectory(prefix="docker2aci-bench-") as tmp_name:
        tmp = Path(tmp_name)
        machine["native_codec"] = install_release(tmp)
        try:
            with run_registry(tmp / "registry") as registry:
                t1 = time.monotonic()
                push(f"oci:{image.layout}:latest", registry, REPO_NAME)
                push_s = round(time.monotonic() - t1, 2)
                warm = tmp / "warm-cache"
                cases = selected(conversion_cases(image, registry.host, warm), args.only)
                if any(c.name == WARM for c in cases):
                    _check_call([*D2A, "--cache-dir", str(warm), "--output-dir", str(tmp), "--insecure-allow-http",
                                 f"docker://{registry.host}/{REPO_NAME}"])
                # the run cases need an ACI run once per stage; the size note uses that ACI
                size, size_line = None, "size: not measured (no run case among --only)"
                if selected(run_cases(tmp, tmp, tmp, stages), args.only):  # (paths unused: only the names count)
                    prepared = prepare_run(image, tmp, stages)
                    size, size_line = size_report(prepared[0])
                    cases += selected(run_cases(*prepared, stages), args.only)
                notes.append(size_line)
                if large is not None:
                    cases += selected([Case("large (2 GiB random) archive -> ACI", _d2a(f"docker-archive:{large}"),
                                            floor=False, note="peak RSS should stay that of 'archive -> ACI'")],
                                      args.only)
                for round_no in range(1, args.runs + 1):  # rounds: load spikes hit every case alike
                    for case in cases:
                        case.run_once(tmp)
                        print(f"  run {round_no}/{args.runs} {case.name}: {case.samples[-1].wall_s:.2f} s",
                              file=sys.stderr, flush=True)
        finally:
            if (tmp / "run-cache").exists():  # pods of ended runs; nothing should be mounted
                subprocess.run([*D2A, "gc", "--cache-dir", str(tmp / "run-cache")], check=False, capture_output=True,
                               cwd=CHILD_CWD)
            for path in tmp.iterdir():
                _remove(path)
    results = [c.result() for c in cases]
    add_ratios(results, cases)
    header = (f"docker2aci benchmark at {machine['commit']}"
              f"{' (+ uncommitted changes)' if machine['uncommitted_changes'] else ''}\n"
              f"machine: {machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}, "
              f"{machine['python']}, {machine['skopeo']}, {machine['umoci']}; C tar-header codec: "
              f"{'yes' if machine['native_codec'] else 'NO (pure Python)'}\n"
              f"{image_summary(image.stats)}; ready in {image_ready_s:.1f} s this time; registry push {push_s:.1f} s\n"
              f"medians of {args.runs} run(s), in rounds; run cases: wall = to the first output line; "
              f"load average {machine['load_avg_at_start'][0]:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(header + "\n\n" + table(results) + "".join(f"\nnote: {n}" for n in notes))
    report = {"machine": machine, "load_avg_at_end": os.getloadavg(), "runs": args.runs, "notes": notes, "cases": results,
              "size": size,
              "image": {**image.stats, "path": str(image.path), "ready_s": image_ready_s, "registry_push_s": push_s}}
    if large is not None:
        report["large_image"] = json.loads((large.parent / "stats.json").read_text())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    part = args.json.with_name(f".{args.json.name}.tmp")
    part.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(part, args.json)
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
