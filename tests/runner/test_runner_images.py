"""Real images run through the CLI, in both stages: ``python -m docker2aci run``.

Images, each built once per session and converted once by the project's converter:

* ``busybox``: the shared 4-layer busybox image (``busybox_basic_layout``, umoci):
  entrypoint ``/bin/sh -c``, cmd ``echo hello from $GREETING; ls /app``, user 1000:1000,
  no ``/dev``;
* ``bookworm``: ``debootstrap --variant=minbase bookworm`` (``bookworm_aci``, cached
  between sessions, see fixtures/README.md): cmd ``/bin/bash``, root, and its own ``/dev``
  with real device nodes;
* small special cases made here with umoci (:func:`special_layout`, one OCI layout, one
  tag each) from Debian's static busybox: no ``/etc`` at all (public case 58), an image
  ``/dev/log`` link, ``./run.sh`` with a working directory and ``sh`` found through the
  image's PATH (case 41), no Cmd or Entrypoint (case 42), USER forms (case 43).

Every run is a fresh ``python -m docker2aci run --stage STAGE --insecure-options=image``
from the project root, with ``XDG_CACHE_HOME`` pointing at a session directory (so the
runner's tree store is the session's, not ``~/.cache``); after the session no mount may
remain under it, and the host's ``/dev/null`` must still be the host's.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from runner_aci_helpers import PROJECT_ROOT, RUNC_MARKS

from fixtures import builders
from runner.linux import mount_points_under

BUSYBOX = builders.BUSYBOX_BINARY

FLY = pytest.param("fly", marks=pytest.mark.root, id="fly")
ISOLATED = pytest.param("isolated", marks=[pytest.mark.root, *RUNC_MARKS], id="isolated")
BOTH_STAGES = pytest.mark.parametrize("stage", [FLY, ISOLATED])
ISOLATED_ONLY = pytest.mark.parametrize("stage", [ISOLATED])
BOTH_IMAGES = pytest.mark.parametrize("image_aci", ["busybox", "bookworm"], indirect=True)

#: The first bookworm run of a session renders 200 MB into the tree store.
RUN_TIMEOUT = 300

DEV_LOG_TARGET = "/run/systemd/journal/dev-log"
#: First line of the ``/etc/hosts`` both stages write into an image that has none.
HOSTS_FIRST_LINE = "127.0.0.1\tlocalhost"


# ------------------------------------------------------------------------- running


@pytest.fixture(scope="session")
def run_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``XDG_CACHE_HOME`` of every run: the runner's tree store and pods live here.

    Afterwards no mount may be left under it; then it is removed (a rendered bookworm
    is 200 MB)."""
    home = tmp_path_factory.mktemp("run-cache")
    yield home
    leftovers = mount_points_under(os.path.realpath(home))
    assert leftovers == [], f"mounts left behind: {leftovers}"
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def _host_dev_null_untouched() -> Iterator[None]:
    yield
    st = os.stat("/dev/null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o666), "host /dev/null changed"


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(run_home: Path) -> Run:
    """``run(aci, stage, args=None, exec_=None, options=(), input=None)``: the CLI in a
    fresh Python; ``args`` go after ``--``; stdin is ``input`` (else ``/dev/null``)."""
    env = dict(os.environ, XDG_CACHE_HOME=str(run_home))

    def go(aci: Path, stage: str, args: Sequence[str] | None = None, *, exec_: str | None = None,
           options: Sequence[str] = (), input: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "docker2aci", "run", "--stage", stage,
                "--insecure-options=image", *options]
        if exec_ is not None:
            argv += ["--exec", exec_]
        argv.append(str(aci))
        if args is not None:
            argv += ["--", *args]
        return subprocess.run(argv, cwd=PROJECT_ROOT, env=env, input=input,
                              stdin=subprocess.DEVNULL if input is None else None,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)

    return go


def _sh(script: str) -> dict[str, object]:
    """Run ``script`` with the image's ``/bin/sh`` whatever its exec is (``--exec``)."""
    return {"exec_": "/bin/sh", "args": ["-c", script]}


# ------------------------------------------------------------------------- images


def _convert(source: str, out: Path) -> Path:
    from docker2aci.aci import Compression
    from docker2aci.pipeline import ConvertOptions, convert

    [aci] = convert(source, ConvertOptions(output_dir=str(out), compression=Compression.NONE,
                                           cache_dir=str(out / ".cache"), use_cache=False))
    return Path(aci.path)


@pytest.fixture(scope="session")
def busybox_aci(busybox_basic_layout: Path, fixture_dir: Path) -> Path:
    """The 4-layer busybox image (user 1000:1000, ``/bin/sh -c`` + echo), converted."""
    return _convert(f"oci:{busybox_basic_layout}:{builders.DEFAULT_TAG}", fixture_dir / "runner-busybox-aci")


@pytest.fixture
def image_aci(request: pytest.FixtureRequest) -> Path:
    """The ACI of the image named by the (indirect) parameter: ``busybox`` or ``bookworm``."""
    return request.getfixturevalue({"busybox": "busybox_aci", "bookworm": "bookworm_aci"}[request.param])


_IMAGE_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "imguser:x:4242:4343:only in the image:/home/imguser:/bin/sh\n"
)
_IMAGE_GROUP = "root:x:0:\nnogroup:x:65534:\nimggroup:x:4343:\n"
_RUN_SH = '#!/opt/bb/sh\nprintf "%s|%s|%s\\n" "$0" "$(pwd)" "$*"\n'


def _busybox_into(directory: Path) -> None:
    """``busybox`` and a link for each of its applets in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BUSYBOX, directory / "busybox")
    os.chmod(directory / "busybox", 0o755)
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            (directory / applet).symlink_to("busybox")


def _populate_bb(rootfs: Path) -> None:
    """/bin with busybox, the image's own passwd/group (``imguser`` 4242:4343 exists only
    here), and an image ``/dev/log`` link, as systemd-based images ship."""
    _busybox_into(rootfs / "bin")
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "passwd").write_text(_IMAGE_PASSWD)
    (rootfs / "etc" / "group").write_text(_IMAGE_GROUP)
    (rootfs / "dev").mkdir()
    (rootfs / "dev" / "log").symlink_to(DEV_LOG_TARGET)
    (rootfs / "tmp").mkdir(mode=0o1777)
    os.chmod(rootfs / "tmp", 0o1777)


def _populate_noetc(rootfs: Path) -> None:
    """Only ``/app/busybox`` (a static binary): no /etc, no /bin, no /dev."""
    (rootfs / "app").mkdir()
    shutil.copyfile(BUSYBOX, rootfs / "app" / "busybox")
    os.chmod(rootfs / "app" / "busybox", 0o755)


def _populate_relexec(rootfs: Path) -> None:
    """busybox and its applets only in /opt/bb (no /bin); ``/app/run.sh``."""
    _busybox_into(rootfs / "opt" / "bb")
    (rootfs / "app").mkdir()
    (rootfs / "app" / "run.sh").write_text(_RUN_SH)
    os.chmod(rootfs / "app" / "run.sh", 0o755)


#: tag -> (rootfs populator, ``umoci config`` arguments).
_BASE_IMAGES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "bb": (_populate_bb, ["--config.entrypoint", "/bin/sh", "--config.entrypoint", "-c",
                          "--config.env", "PATH=/bin"]),
    "noetc": (_populate_noetc, ["--config.entrypoint", "/app/busybox"]),
    "relexec": (_populate_relexec, ["--config.entrypoint", "./run.sh", "--config.workingdir", "/app",
                                    "--config.env", "PATH=/usr/local/bin:/opt/bb"]),
}
#: new tag -> (tag its image and config start from, ``umoci config`` arguments).
_DERIVED_IMAGES: dict[str, tuple[str, list[str]]] = {
    # case 42: Env, Labels and ExposedPorts, but neither Cmd nor Entrypoint
    "bb-noexec": ("bb", ["--clear", "config.entrypoint", "--config.label", "org.example.case=42",
                         "--config.exposedports", "8080/tcp"]),
    # case 43
    "bb-nobody": ("bb", ["--config.user", "nobody"]),
    "bb-imguser": ("bb", ["--config.user", "imguser"]),
    "bb-uid1000": ("bb", ["--config.user", "1000"]),
    "noetc-root": ("noetc", ["--config.user", "root"]),
    # case 41: Cmd ["sh"], found through the image's PATH
    "bare-sh": ("relexec", ["--clear", "config.entrypoint", "--config.cmd", "sh"]),
}


@pytest.fixture(scope="session")
def special_layout(fixture_dir: Path) -> Path:
    """One OCI layout, made with umoci (init / new / unpack / repack / config --tag),
    holding every special-case image under its own tag (:data:`_BASE_IMAGES`,
    :data:`_DERIVED_IMAGES`)."""
    missing = builders.missing_tools("umoci", str(BUSYBOX))
    if missing:
        pytest.skip(str(builders.ToolMissingError(missing)))
    if os.geteuid() != 0:
        pytest.skip("building images with umoci needs root")
    layout = fixture_dir / "runner-special-layout"
    work = fixture_dir / "runner-special-work"
    builders.run_tool(["umoci", "init", "--layout", layout])
    for tag, (populate, config) in _BASE_IMAGES.items():
        image = f"{layout}:{tag}"
        bundle = work / tag
        builders.run_tool(["umoci", "new", "--image", image])
        builders.run_tool(["umoci", "unpack", "--image", image, bundle])
        populate(bundle / "rootfs")
        builders.run_tool(["umoci", "repack", "--image", image, bundle])
        builders.run_tool(["umoci", "config", "--image", image, "--os", "linux",
                           "--architecture", "amd64", *config])
    for tag, (base, config) in _DERIVED_IMAGES.items():
        builders.run_tool(["umoci", "config", "--image", f"{layout}:{base}", "--tag", tag, *config])
    shutil.rmtree(work)
    return layout


@pytest.fixture(scope="session")
def special_aci(special_layout: Path, fixture_dir: Path) -> Callable[[str], Path]:
    """``special_aci(tag)``: that image of :func:`special_layout`, converted once."""
    converted: dict[str, Path] = {}

    def get(tag: str) -> Path:
        if tag not in converted:
            converted[tag] = _convert(f"oci:{special_layout}:{tag}", fixture_dir / "runner-special-acis" / tag)
        return converted[tag]

    return get


# ------------------------------------------------------------------------- both images


@BOTH_STAGES
@BOTH_IMAGES
@pytest.mark.parametrize(
    ("command", "status", "output"),
    [("/bin/true", 0, ""), ("/bin/false", 1, ""), ("/bin/sh -c 'echo out; exit 3'", 3, "out\n")],
    ids=["true", "false-case-61", "exit-3"],
)
def test_exit_status_and_output_are_the_apps(
    run: Run, image_aci: Path, stage: str, command: str, status: int, output: str
) -> None:
    result = run(image_aci, stage, exec_=command)

    assert (result.returncode, result.stdout) == (status, output), result.stderr


@BOTH_STAGES
def test_busybox_default_exec_prints_its_greeting(run: Run, busybox_aci: Path, stage: str) -> None:
    result = run(busybox_aci, stage)

    assert (result.returncode, result.stdout) == (0, "hello from aci\nhello.txt\n"), result.stderr


@BOTH_STAGES
def test_busybox_args_replace_cmd_after_the_entrypoint(run: Run, busybox_aci: Path, stage: str) -> None:
    result = run(busybox_aci, stage, ["echo $GREETING in $(pwd); exit 2"])

    assert (result.returncode, result.stdout) == (2, "aci in /app\n"), result.stderr


@BOTH_STAGES
def test_bookworm_default_cmd_is_bash_reading_stdin(run: Run, bookworm_aci: Path, stage: str) -> None:
    result = run(bookworm_aci, stage, input='echo "${BASH_VERSION%%.*} $0"; exit 5\n')

    assert (result.returncode, result.stdout) == (5, "5 /bin/bash\n"), result.stderr


@BOTH_STAGES
@pytest.mark.parametrize(("image_aci", "ids"), [("busybox", "1000 1000 1000"), ("bookworm", "0 0 0")],
                         indirect=["image_aci"])
def test_user_and_groups_are_the_images(run: Run, image_aci: Path, stage: str, ids: str) -> None:
    result = run(image_aci, stage, **_sh("echo $(id -u) $(id -g) $(id -G)"))

    assert (result.returncode, result.stdout) == (0, ids + "\n"), result.stderr


@BOTH_STAGES
def test_bookworm_exec_setpriv_drops_to_nobody(run: Run, bookworm_aci: Path, stage: str) -> None:
    result = run(bookworm_aci, stage, exec_="setpriv --reuid=65534 --regid=65534 --clear-groups id")

    assert result.stdout == "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n", result.stderr
    assert result.returncode == 0


@BOTH_STAGES
def test_bookworm_is_debian_12_with_dpkg_and_apt(run: Run, bookworm_aci: Path, stage: str) -> None:
    script = ("cat /etc/debian_version; dpkg-query -W -f='${Status}\\n' bash; "
              "dpkg -l | grep -c '^ii'; apt-get --version | head -n 1")
    result = run(bookworm_aci, stage, ["bash", "-c", script])

    debian_version, status, installed, apt = result.stdout.splitlines()
    assert debian_version.startswith("12."), result.stdout
    assert status == "install ok installed"
    assert int(installed) > 80  # minbase: about 90 packages
    assert apt.startswith("apt 2.6."), apt
    assert result.returncode == 0, result.stderr


def test_bookworm_image_ships_its_own_dev(bookworm_aci: Path) -> None:
    """What the /dev tests below rely on: debootstrap's device nodes and links reached
    the ACI (through umoci and the converter)."""
    with tarfile.open(bookworm_aci) as aci:
        dev = {m.name: m for m in aci if m.name.startswith("rootfs/dev/")}

    null, console, stdout = dev["rootfs/dev/null"], dev["rootfs/dev/console"], dev["rootfs/dev/stdout"]
    assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)
    assert console.ischr() and (console.devmajor, console.devminor) == (5, 1)
    assert stdout.issym() and stdout.linkname == "/proc/self/fd/1"


@BOTH_STAGES
@BOTH_IMAGES
def test_dev_null_and_stdout_work_next_to_the_images_dev(
    run: Run, image_aci: Path, stage: str
) -> None:
    """bookworm ships its own /dev (device nodes, links); busybox has none and runs as
    1000 (case 56: ``/dev/stdout`` must be writable)."""
    script = ("echo x > /dev/null && echo null-ok; test -c /dev/null && echo null-is-char; "
              "head -c 3 /dev/zero | wc -c; echo hi > /dev/stdout; echo err > /dev/stderr")
    result = run(image_aci, stage, **_sh(script))

    assert result.stdout.split() == ["null-ok", "null-is-char", "3", "hi"], result.stderr
    assert "err" in result.stderr.split()
    assert result.returncode == 0


# ------------------------------------------------------------------------- special images


@BOTH_STAGES
def test_image_without_etc_gets_resolv_conf_and_hosts(
    run: Run, special_aci: Callable[[str], Path], stage: str
) -> None:
    """Case 58: the rootfs holds only /app/busybox; the runner creates /etc."""
    try:
        host_resolv = Path("/etc/resolv.conf").read_text()
    except OSError as exc:
        pytest.skip(f"the host has no readable /etc/resolv.conf: {exc}")
    script = ("/app/busybox cat /etc/resolv.conf; echo ---; /app/busybox head -n 1 /etc/hosts; "
              "/app/busybox grep -c localhost /etc/hosts")
    result = run(special_aci("noetc"), stage, ["sh", "-c", script])

    resolv, _, hosts = result.stdout.partition("---\n")
    assert resolv == host_resolv, result.stderr
    first, count = hosts.splitlines()
    assert first == HOSTS_FIRST_LINE
    assert int(count) >= 1
    assert result.returncode == 0


@BOTH_STAGES
def test_image_dev_log_link_stays(run: Run, special_aci: Callable[[str], Path], stage: str) -> None:
    result = run(special_aci("bb"), stage, ["readlink /dev/log; test -c /dev/null && echo null"])

    assert (result.returncode, result.stdout) == (0, f"{DEV_LOG_TARGET}\nnull\n"), result.stderr


@BOTH_STAGES
@pytest.mark.parametrize(("args", "output"), [(None, "./run.sh|/app|\n"), (["a b", "c"], "./run.sh|/app|a b c\n")],
                         ids=["no-args", "args"])
def test_relative_entrypoint_runs_in_the_working_directory(
    run: Run, special_aci: Callable[[str], Path], stage: str, args: list[str] | None, output: str
) -> None:
    """Case 41: Entrypoint ``["./run.sh"]``, WorkingDir ``/app``; no /bin in the image."""
    result = run(special_aci("relexec"), stage, args)

    assert (result.returncode, result.stdout) == (0, output), result.stderr


@BOTH_STAGES
def test_bare_sh_is_found_through_the_images_path(
    run: Run, special_aci: Callable[[str], Path], stage: str
) -> None:
    """Case 41: Cmd ``["sh"]`` with PATH ``/usr/local/bin:/opt/bb`` (sh is only in
    /opt/bb); the shell reads its commands from stdin. (``which``, not ``command -v``:
    Debian's static busybox runs its applets without a PATH search, so ``command -v sh``
    just says ``sh``.)"""
    result = run(special_aci("bare-sh"), stage, input='which sh; echo "$PATH"; pwd; exit 4\n')

    assert result.stdout == "/opt/bb/sh\n/usr/local/bin:/opt/bb\n/app\n", result.stderr
    assert result.returncode == 4


@BOTH_STAGES
def test_bare_exec_override_is_found_through_the_images_path(
    run: Run, special_aci: Callable[[str], Path], stage: str
) -> None:
    result = run(special_aci("relexec"), stage, exec_="sh -c 'which sh'")

    assert (result.returncode, result.stdout) == (0, "/opt/bb/sh\n"), result.stderr


@BOTH_STAGES
def test_image_without_exec_needs_exec(run: Run, special_aci: Callable[[str], Path], stage: str) -> None:
    """Case 42: no Cmd nor Entrypoint. Without --exec the CLI refuses clearly (exit 1,
    the conversion/runner error status); with it, the app runs."""
    aci = special_aci("bb-noexec")
    refused = run(aci, stage)
    ran = run(aci, stage, exec_="/bin/sh -c 'echo ran; exit 6'")

    assert refused.returncode == 1, refused.stderr
    assert refused.stdout == ""
    assert "has no exec (no Entrypoint or Cmd): use --exec" in refused.stderr
    assert (ran.returncode, ran.stdout) == (6, "ran\n"), ran.stderr


@BOTH_STAGES
@pytest.mark.parametrize(
    ("tag", "ids"),
    [
        ("bb-nobody", "65534 65534"),  # from the image's /etc/passwd
        ("bb-imguser", "4242 4343"),  # a user that only the image's /etc/passwd has
        # USER 1000 with no passwd entry: group 0 (Docker's rule, decisions.md; the
        # converter writes group "0")
        ("bb-uid1000", "1000 0"),
        ("noetc-root", "0 0"),  # USER root with no /etc/passwd at all
    ],
)
def test_user_forms_at_run_time(
    run: Run, special_aci: Callable[[str], Path], stage: str, tag: str, ids: str
) -> None:
    """Case 43: the USER forms of the config, as the running app sees them."""
    if tag == "bb-imguser":
        import pwd

        with pytest.raises(KeyError):  # else the test could not tell image from host
            pwd.getpwnam("imguser")
    shell = "/app/busybox sh" if tag.startswith("noetc") else "/bin/sh"
    ident = "/app/busybox id" if tag.startswith("noetc") else "id"
    result = run(special_aci(tag), stage, exec_=shell, args=["-c", f"echo $({ident} -u) $({ident} -g)"])

    assert (result.returncode, result.stdout) == (0, ids + "\n"), result.stderr


# ------------------------------------------------------------------------- isolated only


@ISOLATED_ONLY
@BOTH_IMAGES
def test_memory_limit_kills_a_greedy_app_with_137(run: Run, image_aci: Path, stage: str) -> None:
    greedy = _sh("x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo ${#x}")
    limited = run(image_aci, stage, options=["--memory", "16M"], **greedy)
    unlimited = run(image_aci, stage, **greedy)

    assert limited.returncode == 137, limited.stderr
    assert limited.stdout == ""
    assert (unlimited.returncode, unlimited.stdout) == (0, "64000000\n"), unlimited.stderr


@ISOLATED_ONLY
@BOTH_IMAGES
def test_app_is_pid_1(run: Run, image_aci: Path, stage: str) -> None:
    result = run(image_aci, stage, **_sh('exec sh -c "echo \\$\\$"'))

    assert (result.returncode, result.stdout) == (0, "1\n"), result.stderr


@ISOLATED_ONLY
@BOTH_IMAGES
def test_hostname_option(run: Run, image_aci: Path, stage: str) -> None:
    result = run(image_aci, stage, options=["--hostname", "myhost"], **_sh("hostname; cat /proc/sys/kernel/hostname"))

    assert (result.returncode, result.stdout) == (0, "myhost\nmyhost\n"), result.stderr


@ISOLATED_ONLY
@BOTH_IMAGES
def test_net_none_has_only_loopback(run: Run, image_aci: Path, stage: str) -> None:
    result = run(image_aci, stage, options=["--net", "none"], **_sh("ls /sys/class/net"))

    assert (result.returncode, result.stdout) == (0, "lo\n"), result.stderr


# ------------------------------------------------------------------------- volumes


@BOTH_STAGES
def test_busybox_read_only_volume_cannot_be_written(run: Run, busybox_aci: Path, stage: str,
                                                    tmp_path: Path) -> None:
    """The image's VOLUME /data is its mount point volume-data; the host directory is bound
    read-only there: the app reads it and cannot write it (the image's user 1000)."""
    source = tmp_path / "data"
    source.mkdir()
    (source / "in.txt").write_text("from the host\n")
    result = run(busybox_aci, stage, **_sh("cat /data/in.txt; touch /data/new; echo status=$?"),
                 options=["--volume", f"volume-data,kind=host,source={source},readOnly=true"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the host\nstatus=1\n"
    assert "Read-only file system" in result.stderr
    assert sorted(os.listdir(source)) == ["in.txt"]


@BOTH_STAGES
def test_busybox_writable_volume_reaches_the_host(run: Run, busybox_aci: Path, stage: str,
                                                  tmp_path: Path) -> None:
    source = tmp_path / "data"
    source.mkdir()
    os.chown(source, 1000, 1000)
    result = run(busybox_aci, stage, **_sh("echo written > /data/out.txt"),
                 options=["--volume", f"volume-data,kind=host,source={source}"])
    assert result.returncode == 0, result.stderr
    assert (source / "out.txt").read_text() == "written\n"
    assert (source / "out.txt").stat().st_uid == 1000


@BOTH_STAGES
def test_bookworm_volume_target_through_var_run(run: Run, bookworm_aci: Path, stage: str,
                                                tmp_path: Path) -> None:
    """Debian's /var/run is a link to /run (public case 59): a volume mounted at
    /var/run/secrets lands in the image's /run/secrets, never in the host's /run."""
    source = tmp_path / "secrets"
    source.mkdir()
    (source / "token").write_text("s3cret\n")
    assert not os.path.exists("/run/secrets/token")
    result = run(bookworm_aci, stage, **_sh("readlink /var/run; cat /var/run/secrets/token /run/secrets/token"),
                 options=["--volume", f"tok,kind=host,source={source},readOnly=true",
                          "--mount", "volume=tok,target=/var/run/secrets"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "/run\ns3cret\ns3cret\n"
    assert not os.path.exists("/run/secrets/token")


@BOTH_STAGES
def test_set_env_overrides_the_image(run: Run, busybox_aci: Path, stage: str) -> None:
    result = run(busybox_aci, stage, ["echo $GREETING $EXTRA"],
                 options=["--set-env", "GREETING=override", "--set-env", "EXTRA=x=y"])
    assert (result.returncode, result.stdout) == (0, "override x=y\n"), result.stderr


def test_a_volume_naming_no_mount_point_is_refused(run: Run, busybox_aci: Path, tmp_path: Path) -> None:
    result = run(busybox_aci, "fly", ["true"], options=["--volume", f"nope,kind=host,source={tmp_path}"])
    assert result.returncode == 2  # a usage error (run review 2), found once the manifest is read
    assert "--volume 'nope' names no mount point of the image; its mount points: volume-data" in result.stderr
    result = run(busybox_aci, "fly", ["true"], options=["--volume", "bad name,kind=host"])
    assert result.returncode == 2 and "bad name" in result.stderr
