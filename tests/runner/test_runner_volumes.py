"""appc volumes and --set-env: parsing (pure), target preparation in a tree, and real
runs in both stages (needs root; the isolated stage needs runc).

Runs go through ``runner.run.run_fly`` and ``runner.isolated.run_isolated`` in this
process, on busybox ACIs built by the shared helpers and rendered with
``runner.extract.render_aci``; the app's output is captured at the descriptors. After
every run: no mount of the test's directory is left in this namespace, no container in
the runtime's state, no cgroup of the id, and the host's ``/dev/null`` is unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from runner_aci_helpers import (
    BUSYBOX,
    PROJECT_ROOT,
    RUNC,
    RUNC_MARKS,
    SEARCH_PATH,
    BuildAci,
    Entry,
    directory,
    symlink,
)

from docker2aci.errors import RunnerError, VolumeOptionError
from fixtures.builders import private_mounts
from runner.extract import render_aci
from runner.isolated import run_isolated
from runner.linux import MS_BIND, MS_RDONLY, MS_REMOUNT
from runner.ocispec import runtime_config
from runner.paths import owner_in_root, read_text_in_root
from runner.run import KEPT_MOUNT_FLAGS, bind_mounts, run_fly
from runner.spec import DEFAULT_PATH, ProcessSpec, build_process_spec, parse_set_env
from runner.volumes import Bind, Volume, parse_volume, prepare_volumes

ISOLATED = pytest.param("isolated", marks=RUNC_MARKS)


# ------------------------------------------------------------------------ parse_volume


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data,kind=host,source=/tmp", Volume("data", "host", "/tmp")),
        ("data,kind=host,source=/tmp,readOnly=true", Volume("data", "host", "/tmp", True)),
        ("vol-1,readOnly=false,kind=host,source=/", Volume("vol-1", "host", "/", False)),
        ("cache,kind=empty", Volume("cache", "empty")),
        (
            "cache-1,kind=empty,mode=1777,uid=1000,gid=100,readOnly=true",
            Volume("cache-1", "empty", None, True, 0o1777, 1000, 100),
        ),
        ("c,kind=empty,mode=700", Volume("c", "empty", mode=0o700)),
        ("data,kind=host,source=/tmp,readOnly=true,recursive=false",
         Volume("data", "host", "/tmp", True, recursive=False)),
        ("data,kind=host,source=/tmp,recursive=true", Volume("data", "host", "/tmp", recursive=True)),
        ("c,recursive=false,kind=empty", Volume("c", "empty", recursive=False)),
    ],
)
def test_parse_volume(text: str, expected: Volume) -> None:
    assert parse_volume(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no name"),
        (",kind=empty", "no name"),
        ("Data,kind=host,source=/tmp", "name 'Data' is not an AC name"),
        ("data-,kind=empty", "name 'data-' is not an AC name"),
        ("my_data,kind=empty", "name 'my_data' is not an AC name"),
        ("name=data,kind=empty", "the first field must be the volume's name"),
        ("/srv/data:/data", ("this is Docker's HOST:CONTAINER form: write NAME,kind=host,source=HOST, where NAME is "
                             "the image's mount point at CONTAINER (--mount volume=NAME,target=CONTAINER adds one)")),
        ("/srv/data:/data:ro", "this is Docker's HOST:CONTAINER form"),
        ("data", "no kind"),
        ("data,kind=tmpfs", "kind 'tmpfs' is unknown"),
        ("data,kind=host", "kind=host needs source=PATH"),
        ("data,kind=host,source=", "kind=host needs source=PATH"),
        ("data,kind=host,source=tmp", "source 'tmp' is not an absolute path"),
        ("data,kind=host,source=/nonexistent/x", "source '/nonexistent/x' does not exist"),
        ("data,kind=host,source=/tmp,foo=bar", "unknown key 'foo'"),
        ("data,kind=host,source=/tmp,readonly=true", "unknown key 'readonly'"),
        ("data,kind=host,kind=empty", "key 'kind' is given twice"),
        ("data,kind=host,source=/tmp,source=/", "key 'source' is given twice"),
        ("data,kind=host,source=/tmp,readOnly=yes", "readOnly 'yes' is not true or false"),
        ("data,kind=host,source=/tmp,recursive=1", "recursive '1' is not true or false"),
        ("data,kind=host,source=/tmp,recursive=true,recursive=false", "key 'recursive' is given twice"),
        ("data,kind=host,source=/tmp,mode=0700", "key 'mode' applies only to kind=empty"),
        ("data,kind=host,source=/tmp,uid=0", "key 'uid' applies only to kind=empty"),
        ("data,kind=empty,source=/tmp", "key 'source' applies only to kind=host"),
        ("data,kind=empty,mode=999", "mode '999' is not octal"),
        ("data,kind=empty,mode=17777", "mode '17777' is not octal"),
        ("data,kind=empty,uid=-1", "uid '-1' is not a number"),
        ("data,kind=empty,gid=4294967295", "gid '4294967295' is not a number"),
        ("data,kind=empty,uid=" + "1" * 5000, "is not a number from 0"),  # int() refuses that many digits
        ("data,kind=empty,readOnly", "field 'readOnly' is not KEY=VALUE"),
        ("data,kind=empty,", "field '' is not KEY=VALUE"),
        ("data,kind=empty,=x", "field '=x' is not KEY=VALUE"),
    ],
)
def test_parse_volume_errors(text: str, words: str) -> None:
    with pytest.raises(RunnerError) as caught:
        parse_volume(text)

    assert str(caught.value).startswith(f"volume {text!r}: "), caught.value
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": "Data", "kind": "empty"}, "not an AC name"),
        ({"name": "d", "kind": "tmpfs"}, "kind 'tmpfs' is unknown"),
        ({"name": "d", "kind": "host"}, "absolute source"),
        ({"name": "d", "kind": "host", "source": "rel"}, "absolute source"),
        ({"name": "d", "kind": "empty", "source": "/tmp"}, "takes no source"),
        ({"name": "d", "kind": "empty", "mode": 0o10000}, "mode"),
        ({"name": "d", "kind": "empty", "uid": -1}, "uid -1 is out of range"),
    ],
)
def test_volume_fields_are_checked(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(RunnerError, match=words):
        Volume(**kwargs)


# --------------------------------------------------------------------- prepare_volumes


def _tree(tmp_path: Path, links: Mapping[str, str] = {}, dirs: Sequence[str] = ()) -> Path:
    """A bare rootfs with the given directories and symbolic links (no programs)."""
    root = tmp_path / "tree" / "rootfs"
    root.mkdir(parents=True)
    for name in dirs:
        (root / name).mkdir(parents=True)
    for name, target in links.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(target)
    return root


def _host_source(tmp_path: Path, content: Mapping[str, str] | None = None) -> Path:
    source = tmp_path / f"host-{secrets.token_hex(3)}"
    source.mkdir()
    for name, text in (content or {}).items():
        (source / name).write_text(text)
    return source


def _points(*points: tuple[str, str] | tuple[str, str, bool]) -> list[dict[str, Any]]:
    result = []
    for name, path, *read_only in points:
        point: dict[str, Any] = {"name": name, "path": path}
        if read_only:
            point["readOnly"] = read_only[0]
        result.append(point)
    return result


def test_target_through_an_absolute_link_stays_in_the_tree(tmp_path: Path) -> None:
    """Public case 59: /var/run -> /run; the token lands in <rootfs>/run/secrets/token."""
    root = _tree(tmp_path, links={"var/run": "/run"})
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    volume = Volume("token", "host", str(token))

    points = _points(("token", "/var/run/secrets/token"))

    [bind] = prepare_volumes(str(root), points, [volume], empty_dir=str(tmp_path / "e"))

    host_target = root / "run" / "secrets" / "token"
    assert bind == Bind(str(token), "/run/secrets/token", str(host_target), False, "token")
    assert host_target.is_file() and not host_target.is_symlink()
    assert (root / "var" / "run").is_symlink()


@pytest.mark.parametrize("link", ["../../../../etc", "/etc", "../../../../../../../../etc/"])
def test_hostile_links_resolve_inside_the_tree(tmp_path: Path, link: str) -> None:
    root = _tree(tmp_path, links={"data": link})
    source = _host_source(tmp_path)
    host_etc = sorted(os.listdir("/etc"))
    points, volume = _points(("data", "/data")), Volume("data", "host", str(source))

    [bind] = prepare_volumes(str(root), points, [volume], empty_dir=str(tmp_path))

    assert (bind.target, bind.host_target) == ("/etc", str(root / "etc"))
    assert (root / "etc").is_dir()
    assert sorted(os.listdir("/etc")) == host_etc


def test_dotdot_and_relative_links_are_clamped_at_the_root(tmp_path: Path) -> None:
    root = _tree(tmp_path, links={"a/b": "../../../x", "srv": "a/b"})
    source = _host_source(tmp_path)

    points, volume = _points(("v", "/srv/../srv/data")), Volume("v", "host", str(source))

    [bind] = prepare_volumes(str(root), points, [volume], empty_dir=str(tmp_path))

    assert bind.target == "/x/data"
    assert (root / "x" / "data").is_dir()


def test_link_loops_are_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path, links={"loop": "/loop"})
    volume = Volume("v", "host", str(_host_source(tmp_path)))

    with pytest.raises(RunnerError, match="volume 'v': resolving '/loop/x': too many levels"):
        prepare_volumes(str(root), _points(("v", "/loop/x")), [volume], empty_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("volume_read_only", "point_read_only", "expected"),
    [(None, None, False), (None, True, True), (None, False, False), (False, True, False),
     (True, False, True), (True, None, True)],
)  # fmt: skip
def test_read_only_comes_from_the_volume_else_the_mount_point(
    tmp_path: Path, volume_read_only: bool | None, point_read_only: bool | None, expected: bool
) -> None:
    root = _tree(tmp_path)
    points = _points(("v", "/v") if point_read_only is None else ("v", "/v", point_read_only))
    volume = Volume("v", "host", str(_host_source(tmp_path)), volume_read_only)

    [bind] = prepare_volumes(str(root), points, [volume], empty_dir=str(tmp_path / "e"))

    assert bind.read_only is expected


def test_mount_points_without_a_volume_are_left_alone(tmp_path: Path) -> None:
    root = _tree(tmp_path, dirs=["data"])
    (root / "data" / "image-file").write_text("from the image")
    points = _points(("data", "/data"), ("logs", "/var/log"))

    assert prepare_volumes(str(root), points, [], empty_dir=str(tmp_path / "e")) == []
    assert (root / "data" / "image-file").read_text() == "from the image"
    assert not (root / "var").exists()


def test_empty_volume_gets_a_fresh_directory(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    empty_dir = tmp_path / "tree" / "volumes"
    volume = Volume("cache", "empty", mode=0o1770, uid=1000, gid=100)

    points = _points(("cache", "/var/cache"))

    [bind] = prepare_volumes(str(root), points, [volume], empty_dir=str(empty_dir))

    info = os.stat(bind.source)
    assert bind.source == str(empty_dir / "cache")
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o1770, 1000, 100)
    assert os.listdir(bind.source) == []
    assert bind.target == "/var/cache" and (root / "var" / "cache").is_dir()
    with pytest.raises(RunnerError, match="exists already"):
        prepare_volumes(str(root), points, [volume], empty_dir=str(empty_dir))


def test_file_source_gets_an_empty_file_target(tmp_path: Path) -> None:
    root = _tree(tmp_path, dirs=["etc"])
    (root / "etc" / "app.conf").write_text("image's")
    conf = tmp_path / "app.conf"
    conf.write_text("host's")
    points = _points(("conf", "/etc/app.conf"), ("new", "/opt/new.conf"))
    volumes = [Volume("conf", "host", str(conf)), Volume("new", "host", str(conf))]

    binds = prepare_volumes(str(root), points, volumes, empty_dir=str(tmp_path / "e"))

    assert [bind.target for bind in binds] == ["/etc/app.conf", "/opt/new.conf"]
    assert (root / "etc" / "app.conf").read_text() == "image's"  # bound over, not changed
    assert (root / "opt" / "new.conf").read_text() == ""


def test_unknown_volume_lists_the_mount_points(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    points = _points(("volume-data", "/data"), ("logs", "/var/log"))
    volume = Volume("nope", "host", str(_host_source(tmp_path)))

    with pytest.raises(VolumeOptionError) as caught:
        prepare_volumes(str(root), points, [volume], empty_dir=str(tmp_path / "e"))

    assert str(caught.value) == ("--volume 'nope' names no mount point of the image; its mount points: "
                                 "volume-data, logs (--mount volume=nope,target=PATH adds one)")
    assert isinstance(caught.value, RunnerError)  # the runner's callers catch it as before
    with pytest.raises(VolumeOptionError, match="its mount points: none"):
        prepare_volumes(str(root), None, [volume], empty_dir=str(tmp_path / "e"))


@pytest.mark.parametrize(
    ("points", "volumes", "words"),
    [
        (_points(("a", "/a")), ["a", "a"], "volume 'a' is given twice"),
        (_points(("a", "/a"), ("a", "/b")), ["a"], "app.mountPoints names 'a' twice"),
        ({"name": "a"}, ["a"], "app.mountPoints is not a list"),
        ([{"name": "a"}], ["a"], "malformed entry"),
        ([{"name": "a", "path": "/a", "readOnly": "yes"}], ["a"], "malformed entry"),
        (_points(("a", "/data"), ("b", "/data/logs")), ["a", "b"], "one inside the other"),
        (_points(("a", "/data/logs"), ("b", "/data")), ["a", "b"], "one inside the other"),
        (_points(("a", "/data"), ("b", "/srv")), ["a", "b"], "on the same place"),  # srv -> data
        (_points(("a", "/")), ["a"], "is the image's root"),
        (_points(("a", "/up")), ["a"], "is the image's root"),  # up -> ..
        (_points(("a", "/file")), ["a"], "'file' is not a directory"),
        (_points(("a", "/proc/x")), ["a"], "leads into /proc or /sys"),
        (_points(("a", "/sys/fs/x")), ["a"], "leads into /proc or /sys"),
        (_points(("a", "/data/../sys")), ["a"], "leads into /proc or /sys"),
        # bound over the stage's /dev/null, a host file took the app's writes there, and its
        # stdio under runc (runner review); through a link too
        (_points(("a", "/dev/null")), ["a"], "mount point '/dev/null' leads to /dev/null, which the stage mounts"),
        (_points(("a", "/x/null")), ["a"], "mount point '/x/null' leads to /dev/null, which the stage mounts"),
        (_points(("a", "/dev")), ["a"], "leads to /dev, which the stage mounts"),
        (_points(("a", "/dev/pts/0")), ["a"], "leads to /dev/pts, which the stage mounts"),
        (_points(("a", "/dev/shm")), ["a"], "leads to /dev/shm, which the stage mounts"),
    ],
)
def test_prepare_errors(tmp_path: Path, points: Any, volumes: list[str], words: str) -> None:
    root = _tree(tmp_path, links={"srv": "data", "up": "..", "x": "/dev"})
    (root / "file").write_text("")
    source = _host_source(tmp_path)

    with pytest.raises(RunnerError, match=words):
        prepare_volumes(
            str(root), points, [Volume(name, "host", str(source)) for name in volumes],
            empty_dir=str(tmp_path / "e"),
        )  # fmt: skip


def test_a_mount_point_on_the_stage_s_dev_is_refused_when_the_image_links_dev_elsewhere(tmp_path: Path) -> None:
    """An image whose ``/dev`` is a link (``/dev -> /xdev``): the fly stage binds the devices
    where it leads, so ``/dev/null`` resolving to ``/xdev/null`` is still the stage's (review)."""
    root = _tree(tmp_path, links={"dev": "/xdev"}, dirs=["xdev"])
    volume = Volume("a", "host", str(_host_source(tmp_path)))
    for path in ("/dev/null", "/xdev/null", "/dev"):
        with pytest.raises(RunnerError, match="which the stage mounts itself"):
            prepare_volumes(str(root), _points(("a", path)), [volume], empty_dir=str(tmp_path / "e"))


def test_a_device_the_stage_does_not_mount_may_be_a_volume(tmp_path: Path) -> None:
    """``/dev/kvm`` or ``/dev/fuse`` given as a volume: only what the stage mounts itself
    in ``/dev`` is refused."""
    root = _tree(tmp_path)
    points = _points(("kvm", "/dev/kvm"), ("d", "/dev/nullx"))
    volumes = [Volume("kvm", "host", str(_host_source(tmp_path))), Volume("d", "host", str(_host_source(tmp_path)))]

    binds = prepare_volumes(str(root), points, volumes, empty_dir=str(tmp_path / "e"))

    assert [bind.target for bind in binds] == ["/dev/kvm", "/dev/nullx"]


def test_file_source_onto_an_image_directory_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path, dirs=["etc/conf"])
    conf = tmp_path / "conf"
    conf.write_text("")

    points, volume = _points(("c", "/etc/conf")), Volume("c", "host", str(conf))

    with pytest.raises(RunnerError, match="a file but the image has a directory at /etc/conf"):
        prepare_volumes(str(root), points, [volume], empty_dir=str(tmp_path))


def test_vanished_host_source_is_an_error(tmp_path: Path) -> None:
    source = _host_source(tmp_path)
    volume = parse_volume(f"v,kind=host,source={source}")
    source.rmdir()

    with pytest.raises(RunnerError, match=f"volume 'v': source '{source}' does not exist"):
        prepare_volumes(str(_tree(tmp_path)), _points(("v", "/v")), [volume], empty_dir="/none")


# ------------------------------------------------------------ stage mounts (pure parts)


def test_runtime_config_mounts_volumes_after_the_etc_binds() -> None:
    spec = ProcessSpec(argv=("/bin/true",), env={}, cwd="/", uid=0, gid=0)
    binds = [
        Bind("/srv/data", "/data", "/t/rootfs/data", False, "data"),
        Bind("/srv/token", "/run/secrets/token", "/t/rootfs/run/secrets/token", True, "token"),
        Bind("/srv/flat", "/flat", "/t/rootfs/flat", True, "flat", recursive=False),
    ]

    config = runtime_config(
        spec, "/t/rootfs", hostname="h", cgroups_path="/c",
        etc_binds=[("/t/bundle/hosts", "/etc/hosts")], volume_binds=binds,
    )  # fmt: skip

    assert config["mounts"][-4]["destination"] == "/etc/hosts"
    assert config["mounts"][-3:] == [
        {"destination": "/data", "type": "bind", "source": "/srv/data",
         "options": ["rbind", "rprivate", "rw"]},
        {"destination": "/run/secrets/token", "type": "bind", "source": "/srv/token",
         "options": ["rbind", "rprivate", "ro", "rro"]},
        {"destination": "/flat", "type": "bind", "source": "/srv/flat",
         "options": ["bind", "rprivate", "ro", "rro"]},
    ]  # fmt: skip


def test_fly_bind_mounts(tmp_path: Path) -> None:
    writable = Bind(str(tmp_path), "/a", "/t/rootfs/a", False, "a")
    read_only = Bind("/proc", "/b", "/t/rootfs/b", True, "b", recursive=False)
    flat = Bind(str(tmp_path), "/c", "/t/rootfs/c", False, "c", recursive=False)

    calls = bind_mounts([writable, read_only, flat])

    assert [step for step, _ in calls] == [
        "mounting volume a on /a", "mounting volume b on /b", "making volume b read-only",
        "mounting volume c on /c",
    ]  # fmt: skip
    assert [(m.source, m.target, m.flags) for _, m in [*calls[:2], calls[3]]] == [
        (str(tmp_path), "/t/rootfs/a", 0x1000 | 0x4000),
        ("/proc", "/t/rootfs/b", 0x1000),
        (str(tmp_path), "/t/rootfs/c", 0x1000),
    ]
    remount = calls[2][1]
    source_flags = os.statvfs("/proc").f_flag
    kept = sum(ms for st, ms in KEPT_MOUNT_FLAGS if source_flags & st)
    assert (remount.source, remount.target) == (None, "/t/rootfs/b")
    assert remount.flags == MS_BIND | MS_REMOUNT | MS_RDONLY | kept


_FLAGS_SNIPPET = """
import json, sys
from runner.linux import MS_NODEV, MS_NOEXEC, MS_NOSUID, Mount, mount
from runner.run import run_fly
from runner.spec import ProcessSpec
from runner.volumes import Bind
o = json.loads(sys.argv[1])
mount(Mount("tmpfs", o["source"], "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755"))
spec = ProcessSpec(argv=("/bin/grep", " /data ", "/proc/mounts"), env={"PATH": "/bin"},
                   cwd="/", uid=0, gid=0)
bind = Bind(o["source"], "/data", o["target"], True, "data")
sys.exit(run_fly(o["rootfs"], spec, binds=[bind]))
"""


def _unshare_rootfs_and_source(build_aci: BuildAci, tmp_path: Path) -> tuple[str, Path, Path]:
    """``unshare`` (skips without it or busybox-static), a rendered busybox rootfs and a
    host source directory (:func:`_host_source`), for a test in a private mount namespace."""
    unshare = shutil.which("unshare", path=SEARCH_PATH)
    if unshare is None or not BUSYBOX.exists():
        pytest.skip("needs unshare (util-linux) and busybox-static")
    rootfs = tmp_path / "tree" / "rootfs"
    rootfs.mkdir(parents=True)
    render_aci(build_aci(None), rootfs)
    return unshare, rootfs, _host_source(tmp_path)


@pytest.mark.root
def test_fly_read_only_volume_keeps_nosuid_nodev_noexec(
    build_aci: BuildAci, tmp_path: Path
) -> None:
    """The source is a tmpfs mounted nosuid,nodev,noexec in a private mount namespace
    (``unshare``): the read-only bind keeps those flags."""
    unshare, rootfs, source = _unshare_rootfs_and_source(build_aci, tmp_path)
    [bind] = prepare_volumes(
        str(rootfs), _points(("data", "/data")), [Volume("data", "host", str(source))],
        empty_dir=str(tmp_path),
    )  # fmt: skip
    options = {"source": str(source), "target": bind.host_target, "rootfs": str(rootfs)}

    result = subprocess.run(
        [unshare, *private_mounts(sys.executable, "-c", _FLAGS_SNIPPET, json.dumps(options))[1:]],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(line.split()[3].split(",")), line
    assert _mounts_under(tmp_path) == []


_SUBMOUNT_SNIPPET = """
import json, sys
from runner.isolated import run_isolated
from runner.linux import Mount, mount
from runner.run import run_fly
from runner.spec import ProcessSpec
from runner.volumes import Bind
o = json.loads(sys.argv[1])
mount(Mount("tmpfs", o["below"], "tmpfs", 0, "mode=0777"))
with open(o["below"] + "/s.txt", "w") as f:
    f.write("below\\n")
if o["below_is"] == "unbindable":
    mount(Mount(None, o["below"], None, 1 << 17))  # MS_UNBINDABLE
if o["below_is"] == "covered":  # a mount over the source hides the one below it
    mount(Mount("tmpfs", o["source"], "tmpfs", 0, "mode=0777"))
spec = ProcessSpec(argv=("/bin/sh", "-c", o["script"]), env={"PATH": "/bin"}, cwd="/", uid=0, gid=0)
bind = Bind(**o["bind"])
if o["stage"] == "fly":
    sys.exit(run_fly(o["rootfs"], spec, binds=[bind]))
sys.exit(run_isolated(o["rootfs"], spec, binds=[bind], state_dir=o["state"], container_id=o["id"]))
"""


@pytest.mark.root
@pytest.mark.parametrize("stage", ["fly", ISOLATED])
@pytest.mark.parametrize(
    ("option", "below_is", "status", "out"),
    [(",readOnly=true", "mounted", 3, "below\n"), (",recursive=false", "mounted", 4, ""),
     ("", "mounted", 0, "below\nwrote\n"), (",readOnly=true", "mounted-below-root", 3, "below\n"),
     (",readOnly=true", "covered", 4, ""), (",readOnly=true", "unbindable", 3, "below\n")],
    ids=["read-only", "not-recursive", "writable", "read-only-root", "read-only-covered", "read-only-unbindable"],
)
def test_mounts_below_a_volume_source_follow_recursive_and_read_only(
    build_aci: BuildAci, tmp_path: Path, stage: str, option: str, below_is: str, status: int, out: str
) -> None:
    """The source has a tmpfs mounted below it (in a private mount namespace,
    ``unshare``): a volume brings it along, read-only when the volume is (rkt's
    ``--bind-ro`` and fly's remounts), and leaves it out with ``recursive=false``.
    A volume of ``/`` brings it along too (fly remounted ``<target>proc``, not
    ``<target>/proc``); one hidden by a mount over the source is not brought along, and
    the run goes on (fly failed on remounting it: "examining ...: No such file or
    directory"); an unbindable one is (the runners make the namespace private first),
    read-only."""
    unshare, rootfs, source = _unshare_rootfs_and_source(build_aci, tmp_path)
    (source / "sub").mkdir()
    bound = "/" if below_is == "mounted-below-root" else str(source)
    [bind] = prepare_volumes(
        str(rootfs), _points(("data", "/data")), [parse_volume(f"data,kind=host,source={bound}{option}")],
        empty_dir=str(tmp_path),
    )  # fmt: skip
    sub = "/data/" + os.path.relpath(source / "sub", bound)
    options = {
        "stage": stage, "rootfs": str(rootfs), "below": str(source / "sub"), "bind": dataclasses.asdict(bind),
        "below_is": below_is, "source": str(source),
        "script": f"cat {sub}/s.txt || exit 4; echo x > {sub}/new || exit 3; echo wrote",
        "state": str(tmp_path / "state"), "id": f"docker2aci-test-{secrets.token_hex(4)}",
    }  # fmt: skip

    result = subprocess.run(
        [unshare, *private_mounts(sys.executable, "-c", _SUBMOUNT_SNIPPET, json.dumps(options))[1:]],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert (result.returncode, result.stdout) == (status, out), result.stderr
    if status == 3:
        assert "Read-only file system" in result.stderr
    assert os.listdir(source / "sub") == [] and _mounts_under(tmp_path) == []


# ----------------------------------------------------------------------------- set_env


@pytest.mark.parametrize(
    ("text", "expected"),
    [("A=b", ("A", "b")), ("EMPTY=", ("EMPTY", "")), ("OPTS=a=b,c", ("OPTS", "a=b,c")),
     ("lower.dot=x y", ("lower.dot", "x y"))],
)  # fmt: skip
def test_parse_set_env(text: str, expected: tuple[str, str]) -> None:
    assert parse_set_env(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [("NOVALUE", "write NAME=VALUE"), ("", "write NAME=VALUE"), ("=x", "name is empty"),
     ("A=b\0c", "NUL"), ("A\0=b", "NUL")],
)  # fmt: skip
def test_parse_set_env_errors(text: str, words: str) -> None:
    with pytest.raises(RunnerError) as caught:
        parse_set_env(text)

    assert str(caught.value).startswith(f"--set-env {text!r}: ") and words in str(caught.value)


def test_set_env_overrides_the_manifest_and_the_defaults(caplog: pytest.LogCaptureFixture) -> None:
    doc = {
        "name": "example.com/app",
        "app": {"exec": ["/bin/app"], "environment": [{"name": "GREETING", "value": "image"},
                                                      {"name": "KEEP", "value": "k"}]},
    }  # fmt: skip
    set_env = {"GREETING": "override", "NEW": "added", "PATH": "/opt/bin", "AC_APP_NAME": "x"}

    env = build_process_spec(doc, set_env=set_env).env
    plain = build_process_spec(doc).env

    assert dict(env) == {"GREETING": "override", "KEEP": "k", "PATH": "/opt/bin", "HOME": "/",
                         "SHELL": "/bin/sh", "USER": "root", "LOGNAME": "root",
                         "container": "docker2aci", "NEW": "added", "AC_APP_NAME": "app"}  # fmt: skip
    assert (plain["GREETING"], plain["PATH"]) == ("image", DEFAULT_PATH)
    assert "--set-env AC_APP_NAME ignored" in caplog.text


@pytest.mark.parametrize(("name", "value"), [("", "x"), ("A=B", "x"), ("A", "\0")])
def test_set_env_mapping_is_checked(name: str, value: str) -> None:
    with pytest.raises(RunnerError, match="--set-env"):
        build_process_spec({"app": {"exec": ["/bin/app"]}}, set_env={name: value})


# --------------------------------------------------------------------------- real runs


@dataclass(frozen=True)
class Result:
    """A run's status and the app's output (the runner's warnings appended to stderr)."""

    returncode: int
    stdout: str
    stderr: str


#: ``run(app, volumes=(), *, extra=(), set_env=None, before=None) -> Result``.
Run = Callable[..., Result]


def _sh(script: str, **app: Any) -> dict[str, Any]:
    return {"exec": ["/bin/sh", "-c", script], "user": "0", "group": "0", **app}


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return [line for line in handle if str(path) in line]


@pytest.fixture(params=["fly", ISOLATED])
def run(
    request: pytest.FixtureRequest,
    build_aci: BuildAci,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Run:
    """Factory: render a busybox ACI with ``app`` (and ``extra`` entries), prepare the
    ``volumes`` on its mount points, run it in the stage of the parameter."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed")
    stage = request.param
    caplog.set_level(logging.WARNING, logger="runner")
    counter = iter(range(1000))

    def run_app(
        app: Mapping[str, Any],
        volumes: Sequence[Volume] = (),
        *,
        extra: Sequence[Entry] = (),
        set_env: Mapping[str, str] | None = None,
    ) -> Result:
        tree = tmp_path / f"tree-{next(counter)}"
        rootfs = tree / "rootfs"
        rootfs.mkdir(parents=True)
        manifest = render_aci(build_aci(app, extra=extra), rootfs)
        spec = build_process_spec(
            manifest,
            passwd_text=read_text_in_root(rootfs, "/etc/passwd"),
            group_text=read_text_in_root(rootfs, "/etc/group"),
            owner_of=functools.partial(owner_in_root, rootfs),
            set_env=set_env,
        )
        points = manifest["app"].get("mountPoints")
        binds = prepare_volumes(str(rootfs), points, volumes, empty_dir=str(tree / "volumes"))
        capfd.readouterr()
        caplog.clear()
        saved_stdin = os.dup(0)
        state, cid = tmp_path / "state", f"docker2aci-test-{secrets.token_hex(4)}"
        try:
            with open(os.devnull, "rb") as stdin:
                os.dup2(stdin.fileno(), 0)
            if stage == "fly":
                status = run_fly(str(rootfs), spec, binds=binds)
            else:
                status = run_isolated(
                    str(rootfs), spec, binds=binds, state_dir=str(state), container_id=cid
                )
        finally:
            os.dup2(saved_stdin, 0)
            os.close(saved_stdin)
        captured = capfd.readouterr()
        assert _mounts_under(tmp_path) == [], "a mount was left in the runner's namespace"
        if stage == "isolated":
            assert RUNC is not None
            listed = subprocess.run(
                [RUNC, "--root", str(state), "list", "--quiet"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert listed.stdout.split() == [], "a container was left in the runtime's state"
            assert list(Path("/sys/fs/cgroup").glob(f"*/{cid}")) == [], "cgroups left behind"
        null = os.stat("/dev/null")
        assert (null.st_uid, null.st_gid, stat.S_IMODE(null.st_mode)) == (0, 0, 0o666)
        return Result(status, captured.out, captured.err + caplog.text)

    return run_app


def test_host_volume_read_write(run: Run, tmp_path: Path) -> None:
    source = _host_source(tmp_path, {"from-host": "hello from the host\n"})
    app = _sh("cat /data/from-host && echo written > /data/new && ls /data",
              mountPoints=_points(("data", "/data")))  # fmt: skip

    result = run(app, [parse_volume(f"data,kind=host,source={source}")])

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == ["hello from the host", "from-host", "new", ""]
    assert (source / "new").read_text() == "written\n"


@pytest.mark.parametrize(
    ("option", "point_read_only"),
    [(",readOnly=true", None), ("", True)],
    ids=["option", "manifest"],
)
def test_host_volume_read_only(
    run: Run, tmp_path: Path, option: str, point_read_only: bool | None
) -> None:
    source = _host_source(tmp_path, {"kept": "unchanged\n"})
    before = sorted(os.listdir(source))
    point = ("data", "/data") if point_read_only is None else ("data", "/data", point_read_only)
    script = "cat /data/kept; echo x > /data/new || exit 3; echo wrote"
    app = _sh(script, mountPoints=_points(point))

    result = run(app, [parse_volume(f"data,kind=host,source={source}{option}")])

    assert (result.returncode, result.stdout) == (3, "unchanged\n"), result.stderr
    assert "Read-only file system" in result.stderr
    assert sorted(os.listdir(source)) == before and (source / "kept").read_text() == "unchanged\n"


def test_read_only_false_overrides_the_manifest(run: Run, tmp_path: Path) -> None:
    source = _host_source(tmp_path)
    app = _sh("echo x > /data/new && echo wrote", mountPoints=_points(("data", "/data", True)))

    result = run(app, [parse_volume(f"data,kind=host,source={source},readOnly=false")])

    assert result.stdout == "wrote\n", result.stderr
    assert (source / "new").exists()


def test_volume_through_an_absolute_link_case_59(run: Run, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    host_run = sorted(os.listdir("/run"))
    host_secrets = sorted(os.listdir("/run/secrets")) if os.path.isdir("/run/secrets") else None
    extra = [directory("rootfs/var"), symlink("rootfs/var/run", "/run")]
    app = _sh("cat /var/run/secrets/token /run/secrets/token; readlink /var/run",
              mountPoints=_points(("token", "/var/run/secrets/token")))  # fmt: skip

    result = run(app, [parse_volume(f"token,kind=host,source={token},readOnly=true")], extra=extra)

    assert result.stdout == "s3cret\ns3cret\n/run\n", result.stderr
    assert sorted(os.listdir("/run")) == host_run
    if host_secrets is not None:
        assert sorted(os.listdir("/run/secrets")) == host_secrets


@pytest.mark.parametrize("link", ["../../../../etc", "/etc"])
def test_hostile_link_never_reaches_the_hosts_etc(run: Run, tmp_path: Path, link: str) -> None:
    source = _host_source(tmp_path, {"volume-file": "v\n"})
    host_etc = sorted(os.listdir("/etc"))
    app = _sh("echo marker > /data/marker && ls /data && ls /etc",
              mountPoints=_points(("data", "/data")))  # fmt: skip

    volume = parse_volume(f"data,kind=host,source={source}")

    result = run(app, [volume], extra=[symlink("rootfs/data", link)])

    assert result.returncode == 0, result.stderr
    # the volume is the app's /etc (the tree's, where the link leads), not the host's
    assert result.stdout.split() == ["marker", "volume-file", "marker", "volume-file"]
    assert sorted(os.listdir("/etc")) == host_etc
    assert not os.path.exists("/etc/marker")
    assert (source / "marker").read_text() == "marker\n"


def test_empty_volume(run: Run) -> None:
    script = "stat -c '%a %u %g' /cache && ls -A /cache && echo written > /cache/f && cat /cache/f"
    app = _sh(script, user="1000", group="1000", mountPoints=_points(("cache", "/cache")))

    result = run(app, [parse_volume("cache,kind=empty,mode=0700,uid=1000,gid=1000")])

    assert result.stdout == "700 1000 1000\nwritten\n", result.stderr


def test_file_volume_on_an_image_file(run: Run, tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("from the host\n")
    extra = [Entry("rootfs/etc/app.conf", data=b"from the image\n")]
    app = _sh("cat /etc/app.conf", mountPoints=_points(("conf", "/etc/app.conf")))

    assert run(app, extra=extra).stdout == "from the image\n"
    result = run(app, [parse_volume(f"conf,kind=host,source={conf}")], extra=extra)
    assert result.stdout == "from the host\n", result.stderr


def test_mount_point_without_a_volume_keeps_the_images_directory(run: Run) -> None:
    extra = [directory("rootfs/data"), Entry("rootfs/data/seed", data=b"seed\n")]
    app = _sh("cat /data/seed && echo x > /data/new && echo writable",
              mountPoints=_points(("data", "/data")))  # fmt: skip

    assert run(app, extra=extra).stdout == "seed\nwritable\n"


def test_set_env_reaches_the_app(run: Run) -> None:
    app = _sh('echo "$GREETING|$NEW|$PATH|$AC_APP_NAME"',
              environment=[{"name": "GREETING", "value": "from the image"}])  # fmt: skip

    result = run(app, set_env={"GREETING": "overridden", "NEW": "added value", "PATH": "/bin"})

    assert result.stdout == "overridden|added value|/bin|busybox\n", result.stderr
