"""appc volumes: parse ``--volume`` options and prepare their bind mounts in a rootfs.

An image declares *mount points* (appc ``spec/types.md``, "Image Manifest Schema":
``app.mountPoints``, each ``{"name", "path", "readOnly"}``); the user supplies
*volumes* (appc ``spec/ace.md``, "Volumes"; ``spec/pods.md``: ``volumes``) and each
volume is bound onto the mount point of the same name. Two kinds exist:

* ``host``: a host file or directory (``source``), bound as it is;
* ``empty``: a fresh, empty directory (``mode``, ``uid``, ``gid``) made by the runner
  for this run and removed with the per-run tree.

The command-line syntax is rkt's (``rkt run --volume``)::

    NAME,kind=host,source=/abs/path[,readOnly=true|false][,recursive=true|false]
    NAME,kind=empty[,mode=0755][,uid=0][,gid=0][,readOnly=true|false][,recursive=true|false]

A volume's ``readOnly``, when given, wins over the mount point's (rkt's rule); without
either the bind is writable. A volume is bound recursively (the mounts below its source
come with it, rkt's default stage1's default) unless ``recursive=false``; a read-only
recursive volume is read-only in those mounts too, as rkt makes it.

A mount point that no volume names is left alone: the app sees the image's own
directory (or nothing, if the image has none) in the per-run tree, writable and thrown
away with the tree. This is what Docker's anonymous volume, and rkt's implicit empty
volume for an image converted from Docker (a copy of the image's content), give an
app, without keeping anything. rkt's implicit volume is read-only when the mount point
is, and empty for other images (rkt fly refuses to run instead): a ``readOnly`` mount
point left without a volume is named in a warning, as the app can write there.

A volume that names no mount point (after ``--mount``) is refused before anything is
mounted, as rkt fly refuses it (rkt's default stage1 ignores it):
:class:`~docker2aci.errors.VolumeOptionError`, a usage error.

Targets are resolved inside the rootfs with :func:`runner.paths.resolve_in_root`: an
absolute symbolic link restarts at the rootfs, ``..`` stops at its root, link hops are
limited. So an image whose ``/var/run`` links to ``/run`` gets its volume in
``<rootfs>/run/...`` (public case 59), and a link to ``../../../etc`` lands in the
tree's ``/etc``, never in the host's. Missing parts are created (directories; an empty
file as the last one when the source is not a directory). The stages then mount onto
the resolved path, which contains no symbolic link (:class:`Bind`).

Not supported (refused with :class:`~docker2aci.errors.RunnerError`): a volume on the
rootfs itself (``/``), and targets nested in one another (``/data`` and
``/data/logs``): the inner target would have to be resolved in the outer volume's
content, which belongs to the host.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from converters.numbers import MAX_OWNER_ID, plain_decimal
from docker2aci.errors import RunnerError, VolumeOptionError
from runner.paths import in_kernel_fs, make_dirs_in_root, resolve_in_root, stage_dev_path

logger = logging.getLogger(__name__)

#: Volume kinds (appc ``spec/ace.md``, "Volumes").
KINDS = ("host", "empty")

#: Keys of the ``--volume`` syntax after the name.
VOLUME_KEYS = ("kind", "source", "readOnly", "recursive", "mode", "uid", "gid")

#: Keys that only a ``kind=empty`` volume takes.
EMPTY_ONLY_KEYS = ("mode", "uid", "gid")

#: Permission bits of an empty volume when ``mode`` is not given (rkt's default).
DEFAULT_EMPTY_MODE = 0o755

#: An appc AC name (``spec/types.md``, "AC Name Type").
AC_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

_OCTAL_MODE = re.compile(r"[0-7]{1,5}")


@dataclass(frozen=True)
class Volume:
    """One volume the user supplies (appc ``spec/ace.md``, "Volumes").

    Attributes:
        name: an AC name (``^[a-z0-9]+(-[a-z0-9]+)*$``); the mount point it fills.
        kind: ``"host"`` or ``"empty"``.
        source: ``host``: an absolute host path (file or directory); ``empty``: ``None``.
        read_only: ``True``/``False`` to force it; ``None`` takes the mount point's
            ``readOnly`` (default ``False``).
        mode: ``empty`` only: permission bits of the new directory (default ``0o755``).
        uid: ``empty`` only: owner of the new directory (default 0).
        gid: ``empty`` only: group of the new directory (default 0).
        recursive: whether the mounts below the source come with it (default ``True``).

    Raises:
        RunnerError: (on creation) a field is invalid: bad name or kind, a ``host``
            volume without an absolute source, an ``empty`` volume with a source, a mode
            above ``0o7777``, an id outside 0 … 2**32 - 2.
    """

    name: str
    kind: str
    source: str | None = None
    read_only: bool | None = None
    mode: int = DEFAULT_EMPTY_MODE
    uid: int = 0
    gid: int = 0
    recursive: bool = True

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem is not None:
            raise RunnerError(f"volume {self.name!r}: {problem}")


@dataclass(frozen=True)
class Bind:
    """A bind mount a stage makes for a volume.

    Attributes:
        source: the host file or directory mounted (a ``host`` volume's source, or the
            fresh directory of an ``empty`` one).
        target: the absolute path inside the rootfs, every symbolic link resolved in
            the rootfs (it contains none), e.g. ``/run/secrets/token`` for a mount
            point at ``/var/run/secrets/token`` when ``/var/run`` links to ``/run``.
        host_target: the host path of ``target`` in the tree (``<rootfs>/run/...``);
            it exists (created if needed).
        read_only: whether the app may not write through the mount (nor through the
            mounts below it, when ``recursive``).
        volume: the volume's name.
        recursive: whether the mounts below ``source`` are bound with it.
    """

    source: str
    target: str
    host_target: str
    read_only: bool
    volume: str
    recursive: bool = True


@dataclass(frozen=True)
class _MountPoint:
    name: str
    path: str
    read_only: bool


def parse_volume(text: str) -> Volume:
    """Parse a ``--volume`` option in rkt's syntax.

    ``NAME,kind=host,source=PATH[,readOnly=true|false]`` or
    ``NAME,kind=empty[,mode=OCTAL][,uid=N][,gid=N][,readOnly=true|false]``, each
    with an optional ``recursive=true|false`` (default ``true``); keys are
    case-sensitive and given at most once; ``mode`` is octal (``0755``, ``1777``),
    ``uid`` and ``gid`` decimal. A ``host`` source must exist now (it is looked up
    again when the run starts).

    Args:
        text: the option's value, e.g. ``"data,kind=host,source=/srv/data,readOnly=true"``.

    Returns:
        The volume.

    Raises:
        RunnerError: the message quotes ``text`` and names the problem: a name that is
            not an AC name, a field that is not ``KEY=VALUE``, an unknown or repeated key,
            a missing or unknown kind, a missing, relative or nonexistent source, a
            source, mode, uid or gid given to the wrong kind, or a bad value.
    """

    def fail(problem: str) -> RunnerError:
        return RunnerError(f"volume {text!r}: {problem}")

    if not isinstance(text, str):
        raise RunnerError(f"volume {text!r}: not a string")
    name, *fields = text.split(",")
    if not name:
        raise fail("no name (write NAME,kind=host,source=PATH or NAME,kind=empty)")
    if "=" in name:
        raise fail(f"the first field must be the volume's name, not {name!r}")
    if not fields and ":" in name:  # docker run -v /srv/data:/data
        raise fail("this is Docker's HOST:CONTAINER form: write NAME,kind=host,source=HOST, where NAME is the "
                   "image's mount point at CONTAINER (--mount volume=NAME,target=CONTAINER adds one)")
    if not AC_NAME.fullmatch(name):
        raise fail(
            f"name {name!r} is not an AC name (lowercase letters, digits and inner "
            "hyphens, as in the image's mount points)"
        )
    values: dict[str, str] = {}
    for field in fields:
        key, equals, value = field.partition("=")
        if not equals or not key:
            raise fail(f"field {field!r} is not KEY=VALUE")
        if key not in VOLUME_KEYS:
            raise fail(f"unknown key {key!r} (use {', '.join(VOLUME_KEYS)})")
        if key in values:
            raise fail(f"key {key!r} is given twice")
        values[key] = value
    kind = values.get("kind")
    if kind is None:
        raise fail("no kind (add kind=host,source=PATH or kind=empty)")
    if kind not in KINDS:
        raise fail(f"kind {kind!r} is unknown (use kind=host or kind=empty)")
    if kind == "host":
        misplaced = [key for key in EMPTY_ONLY_KEYS if key in values]
        if misplaced:
            raise fail(f"key {misplaced[0]!r} applies only to kind=empty")
        source = values.get("source")
        if not source:
            raise fail("kind=host needs source=PATH (an absolute host path)")
        if not source.startswith("/"):
            raise fail(f"source {source!r} is not an absolute path")
        if not os.path.exists(source):
            raise fail(f"source {source!r} does not exist")
    elif "source" in values:
        raise fail("key 'source' applies only to kind=host")
    read_only = None
    if "readOnly" in values:
        read_only = _parse_bool(values["readOnly"], "readOnly", fail)
    recursive = _parse_bool(values["recursive"], "recursive", fail) if "recursive" in values else True
    mode = DEFAULT_EMPTY_MODE
    if "mode" in values:
        if not _OCTAL_MODE.fullmatch(values["mode"]) or int(values["mode"], 8) > 0o7777:
            raise fail(f"mode {values['mode']!r} is not octal permission bits (0755, 1777)")
        mode = int(values["mode"], 8)
    uid, gid = (
        _parse_id(values[key], key, fail) if key in values else 0 for key in ("uid", "gid")
    )
    return Volume(name, kind, values.get("source"), read_only, mode, uid, gid, recursive)


def parse_mount(text: str) -> dict[str, str]:
    """Parse rkt's ``--mount volume=NAME,target=PATH``: a mount point the image does not
    declare (or a new path for one it does), for the volume ``NAME``.

    Returns:
        A mount point in the manifest's form: ``{"name": NAME, "path": PATH}``.

    Raises:
        RunnerError: a key other than ``volume`` and ``target``, one missing or given
            twice, a name that is not an AC name, or a relative target; the message
            quotes the option.
    """
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or key not in ("volume", "target"):
            raise RunnerError(f"--mount {text!r}: {item!r} is not volume=NAME or target=PATH")
        if key in fields:
            raise RunnerError(f"--mount {text!r}: {key} is given twice")
        fields[key] = value
    for key in ("volume", "target"):
        if not fields.get(key):
            raise RunnerError(f"--mount {text!r}: {key} is missing")
    if not AC_NAME.fullmatch(fields["volume"]):
        raise RunnerError(f"--mount {text!r}: volume {fields['volume']!r} is not an AC name "
                          "(lowercase letters, digits and single hyphens)")
    if not fields["target"].startswith("/"):
        raise RunnerError(f"--mount {text!r}: target {fields['target']!r} is not an absolute path")
    return {"name": fields["volume"], "path": fields["target"]}


def with_mounts(mount_points: Sequence[Mapping[str, Any]] | None,
                mounts: Sequence[Mapping[str, str]]) -> list[Mapping[str, Any]]:
    """The image's mount points with ``--mount`` ones added: a mount of a name the image
    declares moves that mount point (keeping its ``readOnly``); others are appended."""
    result = [dict(point) if isinstance(point, Mapping) else point for point in (mount_points or [])]
    for mount in mounts:
        for point in result:
            if isinstance(point, dict) and point.get("name") == mount["name"]:
                point["path"] = mount["path"]
                break
        else:
            result.append(dict(mount))
    return result


def prepare_volumes(
    rootfs: str,
    mount_points: Sequence[Mapping[str, Any]] | None,
    volumes: Sequence[Volume],
    *,
    empty_dir: str,
) -> list[Bind]:
    """Match volumes to the image's mount points and prepare the targets in the tree.

    For each mount point (in the manifest's order) that a volume names: its path is
    resolved inside ``rootfs`` (see the module's description), the missing parts are
    created (directories, and an empty file as the last part when the source is not a
    directory), and a :class:`Bind` is returned. ``kind=empty`` volumes get a fresh
    directory ``empty_dir/NAME`` with their mode and owner. Mount points that no volume
    names are left as the image has them (writable, in the per-run tree; with a warning
    when the mount point is ``readOnly``). Nothing is mounted here: the stages do that
    (:func:`runner.run.run_fly`, :func:`runner.isolated.run_isolated`).

    Args:
        rootfs: the rendered tree (a host directory); it is modified.
        mount_points: the manifest's ``app.mountPoints`` (``[{"name", "path",
            "readOnly"?}]``; ``None`` when absent). appc ``spec/types.md``.
        volumes: the volumes to bind (:func:`parse_volume`).
        empty_dir: a host directory (created, mode 0700, when missing; outside the
            rootfs) where the directories of ``empty`` volumes are made.

    Returns:
        The binds, in the order of the mount points.

    Raises:
        VolumeOptionError: two volumes have the same name, or a volume names no mount
            point (the message lists the image's).
        RunnerError: ``mount_points`` is malformed or names a mount point twice; a host
            source vanished; a target is the rootfs itself, leads into ``/proc``, ``/sys``
            or what the stage mounts in ``/dev`` (:func:`runner.paths.stage_dev_path`:
            ``/dev`` itself, ``/dev/null``, ``/dev/pts``), nests with another, or exists
            as a directory where the source is a file (or the other way round); a path
            loops; an empty volume's directory exists already or cannot be made.
    """
    points = _mount_points(mount_points)
    by_name: dict[str, Volume] = {}
    for volume in volumes:
        if volume.name in by_name:
            raise VolumeOptionError(f"--volume {volume.name!r} is given twice")
        by_name[volume.name] = volume
    names = [point.name for point in points]
    for name in by_name:
        if name not in names:
            raise VolumeOptionError(
                f"--volume {name!r} names no mount point of the image; its mount "
                f"points: {', '.join(names) if names else 'none'} (--mount volume={name},target=PATH "
                "adds one)"
            )
    root = os.path.abspath(rootfs)
    planned: list[tuple[_MountPoint, Volume, str]] = []
    for point in points:
        if point.name not in by_name:
            if point.read_only:
                logger.warning("mount point %s (%s) is read-only in the image, but no --volume gives it: the app "
                               "gets the image's own directory there, writable (rkt mounts a read-only volume); "
                               "give --volume %s,kind=empty or %s,kind=host,source=PATH", point.name, point.path,
                               point.name, point.name)
            else:
                logger.debug("mount point %s (%s): no volume, the image's own", point.name, point.path)
            continue
        volume = by_name[point.name]
        try:
            host_target = resolve_in_root(root, point.path)
        except RunnerError as err:
            raise RunnerError(f"volume {volume.name!r}: {err}") from err
        if host_target == root:
            raise RunnerError(
                f"volume {volume.name!r}: mount point {point.path!r} is the image's root: "
                "a volume cannot replace it"
            )
        if in_kernel_fs(root, host_target):
            raise RunnerError(
                f"volume {volume.name!r}: mount point {point.path!r} leads into /proc or /sys, "
                "where the stage mounts kernel file systems"
            )
        if (taken := stage_dev_path(root, host_target)) is not None:  # bound over the stage's, the volume
            # would take the app's writes to /dev/null, and its stdio (runc reopens a standard stream there)
            raise RunnerError(
                f"volume {volume.name!r}: mount point {point.path!r} leads to {taken}, "
                "which the stage mounts itself"
            )
        planned.append((point, volume, host_target))
    _check_nesting(planned)
    binds = []
    for point, volume, host_target in planned:
        source = _source(volume, empty_dir)
        _make_target(root, host_target, os.path.isdir(source), volume.name, point.path)
        binds.append(
            Bind(
                source=source,
                target="/" + os.path.relpath(host_target, root),
                host_target=host_target,
                read_only=point.read_only if volume.read_only is None else volume.read_only,
                volume=volume.name,
                recursive=volume.recursive,
            )
        )
    return binds


def _problem(volume: Volume) -> str | None:
    """What is wrong with a volume's fields, or ``None``."""
    if not isinstance(volume.name, str) or not AC_NAME.fullmatch(volume.name):
        return "the name is not an AC name (lowercase letters, digits and inner hyphens)"
    if volume.kind not in KINDS:
        return f"kind {volume.kind!r} is unknown (use host or empty)"
    if volume.kind == "host":
        if not isinstance(volume.source, str) or not volume.source.startswith("/"):
            return "kind=host needs an absolute source path"
    elif volume.source is not None:
        return "kind=empty takes no source"
    if volume.read_only is not None and not isinstance(volume.read_only, bool):
        return "readOnly is not true or false"
    if not isinstance(volume.recursive, bool):
        return "recursive is not true or false"
    if not isinstance(volume.mode, int) or not 0 <= volume.mode <= 0o7777:
        return f"mode {volume.mode!r} is not permission bits (0 to 0o7777)"
    for what, value in (("uid", volume.uid), ("gid", volume.gid)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_OWNER_ID:
            return f"{what} {value!r} is out of range"
    return None


def _parse_bool(value: str, key: str, fail: Any) -> bool:
    if value == "true":
        return True
    if value == "false":
        return False
    raise fail(f"{key} {value!r} is not true or false")


def _parse_id(value: str, key: str, fail: Any) -> int:
    number = plain_decimal(value, 10)
    if number is None or number > MAX_OWNER_ID:
        raise fail(f"{key} {value!r} is not a number from 0 to {MAX_OWNER_ID}")
    return number


def _mount_points(value: object) -> list[_MountPoint]:
    """Validate the manifest's ``app.mountPoints``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RunnerError("manifest field app.mountPoints is not a list")
    points: list[_MountPoint] = []
    for item in value:
        if (
            not isinstance(item, Mapping)
            or not isinstance(item.get("name"), str)
            or not item["name"]
            or not isinstance(item.get("path"), str)
            or not item["path"]
            or not isinstance(item.get("readOnly", False), bool)
        ):
            raise RunnerError(f"manifest field app.mountPoints has a malformed entry: {item!r}")
        if any(point.name == item["name"] for point in points):
            raise RunnerError(f"manifest field app.mountPoints names {item['name']!r} twice")
        points.append(_MountPoint(item["name"], item["path"], item.get("readOnly", False)))
    return points


def _check_nesting(planned: Iterable[tuple[_MountPoint, Volume, str]]) -> None:
    """Refuse two targets that are the same place or lie one inside the other."""
    seen: list[tuple[_MountPoint, str]] = []
    for point, _, host_target in planned:
        for other, other_target in seen:
            if (
                host_target == other_target
                or host_target.startswith(other_target + "/")
                or other_target.startswith(host_target + "/")
            ):
                raise RunnerError(
                    f"volumes {other.name!r} ({other.path}) and {point.name!r} ({point.path}) "
                    "are mounted on the same place or one inside the other: not supported"
                )
        seen.append((point, host_target))


def _source(volume: Volume, empty_dir: str) -> str:
    """The host path to bind: the host source (checked again), or a fresh directory."""
    if volume.kind == "host":
        assert volume.source is not None  # checked by Volume
        if not os.path.exists(volume.source):
            raise RunnerError(f"volume {volume.name!r}: source {volume.source!r} does not exist")
        return volume.source
    path = os.path.join(os.path.abspath(empty_dir), volume.name)
    try:
        os.makedirs(empty_dir, 0o700, exist_ok=True)
        os.mkdir(path, volume.mode & 0o777)
        os.chown(path, volume.uid, volume.gid)
        os.chmod(path, volume.mode)  # after chown, which clears set-id bits
    except FileExistsError:
        raise RunnerError(
            f"volume {volume.name!r}: {path} exists already: an empty volume needs a fresh "
            "directory"
        ) from None
    except OSError as err:
        raise RunnerError(f"volume {volume.name!r}: making {path}: {err.strerror}") from err
    return path


def _make_target(root: str, host_target: str, directory: bool, name: str, path: str) -> None:
    """Create the resolved target: directories, and an empty file for a file source."""
    target = "/" + os.path.relpath(host_target, root)
    try:
        if directory:
            make_dirs_in_root(root, target)
            return
        make_dirs_in_root(root, posixpath.dirname(target))
    except RunnerError as err:
        raise RunnerError(f"volume {name!r} at {path}: {err}") from err
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.close(os.open(host_target, flags, 0o644))
    except FileExistsError:
        if stat.S_ISDIR(os.lstat(host_target).st_mode):
            raise RunnerError(
                f"volume {name!r}: the source is a file but the image has a directory at "
                f"{target}"
            ) from None
    except OSError as err:
        raise RunnerError(f"volume {name!r}: creating {target}: {err.strerror}") from err
