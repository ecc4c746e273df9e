"""Check and describe ACI files: ``docker2aci validate`` and ``docker2aci inspect``.

:func:`validate_aci` checks an ACI against the appc spec (``spec/aci.md``, "Image
Archives" and "Image Layout"; ``spec/types.md``, "Image Manifest Schema" and the AC Name
and AC Identifier types): what ``actool validate`` checks (a readable archive, the
manifest's schema: the type of every field, labels against appc's os/arch table,
annotations with their ``created`` and ``homepage``/``documentation`` formats, environment
names, isolators, ports, mount points, event handlers) and the rules it lets through:
nothing at the top but ``manifest`` and ``rootfs/``, no entry twice, hard links to files
of ``rootfs/`` that exist before them, absolute ``pathWhitelist`` entries, well-formed
dependencies. It reads the archive once, as a stream, and never writes anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from converters.manifest import is_rfc3339
from docker2aci.acifile import open_tar
from docker2aci.errors import RunnerError
from runner.extract import (MAX_MANIFEST_BYTES, archive_components, compression_name, errors_named,
                            open_uncompressed, parse_manifest)
from runner.volumes import AC_NAME

#: AC Identifier (``spec/types.md``): lowercase, digits and ``-._~/``, starting and
#: ending with a letter or digit.
AC_IDENTIFIER = re.compile(r"[a-z0-9]+(?:[-._~/][a-z0-9]+)*")
#: acVersion: a semantic version.
SEMVER = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
IMAGE_ID = re.compile(r"sha512-[0-9a-f]{1,128}")
#: The os label's values, and the arch values each allows (appc 0.8.11, ``ValidOSArch``).
VALID_OS_ARCH = {
    "linux": ("amd64", "i386", "aarch64", "aarch64_be", "armv6l", "armv7l", "armv7b", "ppc64", "ppc64le", "s390x"),
    "freebsd": ("amd64", "i386", "arm"),
    "darwin": ("x86_64", "i386"),
}
#: An environment variable's name (appc 0.8.11).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9.-]*")
#: A resource quantity (appc 0.8.11, as Kubernetes': ``500m``, ``1G``, ``1Gi``).
QUANTITY = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")
#: The isolators appc 0.8.11 knows, by the kind of value each takes.
RESOURCE_ISOLATORS = frozenset({"resource/cpu", "resource/memory", "resource/block-bandwidth",
                                "resource/block-iops", "resource/network-bandwidth"})
SET_ISOLATORS = frozenset({"os/linux/capabilities-retain-set", "os/linux/capabilities-remove-set",
                           "os/linux/seccomp-retain-set", "os/linux/seccomp-remove-set"})
INT_ISOLATORS = frozenset({"os/linux/oom-score-adj", "os/linux/cpu-shares"})
OTHER_ISOLATORS = frozenset({"os/linux/no-new-privileges", "os/linux/selinux-context"})
#: The event handlers of an app (``pre-start``, ``post-stop``).
EVENT_HANDLERS = ("pre-start", "post-stop")


@dataclass
class Report:
    """What :func:`validate_aci` found.

    Attributes:
        path: the file checked.
        image_id: its image ID (``sha512-<hex>``), when the archive could be read.
        manifest: the parsed manifest, when there is one.
        entries: how many tar entries it has.
        problems: one line per rule broken; empty for a valid ACI.
    """

    path: str
    image_id: str | None = None
    manifest: dict[str, Any] | None = field(default=None, repr=False)
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Whether no rule is broken."""
        return not self.problems


def validate_aci(path: str | os.PathLike[str]) -> Report:
    """Check one ACI file (see the module's description).

    Args:
        path: the ACI (gzip, bzip2, xz or plain tar).

    Returns:
        The :class:`Report`; ``problems`` names each entry or manifest field at fault.
    """
    report = Report(os.fspath(path))
    try:
        _scan(report)
    except RunnerError as err:
        report.problems.append(str(err))  # unreadable: whether it has a manifest is unknown
    else:
        if report.manifest is None and not any("manifest" in p for p in report.problems):
            report.problems.append("no manifest entry")
    if report.manifest is not None:
        report.problems.extend(manifest_problems(report.manifest))
    return report


def _scan(report: Report) -> None:
    seen: set[str] = set()
    directories: set[str] = set()
    rootfs_seen = False
    with errors_named("reading", report.path), open_uncompressed(report.path) as stream, open_tar(stream) as archive:
        while (member := archive.next()) is not None:
            report.entries += 1
            try:
                parts = archive_components(member.name)
            except RunnerError as err:
                report.problems.append(str(err))
                continue
            name = "/".join(parts)
            if name in seen:
                report.problems.append(f"entry {member.name!r}: given twice")
            seen.add(name)
            if member.isdir():
                directories.add(name)
            if name == "manifest":
                if not member.isreg() or member.size > MAX_MANIFEST_BYTES:
                    report.problems.append("entry 'manifest': not a regular file of at most 1 MiB")
                    continue
                data = archive.extractfile(member)
                assert data is not None
                try:
                    report.manifest = parse_manifest(data.read())
                except RunnerError as err:
                    report.problems.append(f"entry 'manifest': {err}")
                continue
            if not parts or parts[0] != "rootfs":
                report.problems.append(f"entry {member.name!r}: only 'manifest' and 'rootfs/' may be at the top")
                continue
            if parts == ["rootfs"]:
                rootfs_seen = True
                if not member.isdir():
                    report.problems.append("entry 'rootfs': not a directory")
            if member.islnk():
                target = "/".join(p for p in member.linkname.split("/") if p not in ("", "."))
                if target not in seen or target == name:
                    report.problems.append(f"entry {member.name!r}: hard link to {member.linkname!r}, "
                                           "which is not an earlier entry")
                elif not target.startswith("rootfs/") or target in directories:  # render refuses them
                    report.problems.append(f"entry {member.name!r}: hard link to {member.linkname!r}, "
                                           "which is not a file of rootfs/")
        report.image_id = stream.image_id()
    if not rootfs_seen and not any(n.startswith("rootfs/") for n in seen):
        report.problems.append("no 'rootfs' directory")


def manifest_problems(manifest: Mapping[str, Any]) -> list[str]:
    """The appc ``ImageManifest`` schema rules a manifest breaks (``spec/types.md``).

    Returns:
        One line per problem, naming the field.
    """
    problems: list[str] = []

    def need(ok: bool, text: str) -> None:
        if not ok:
            problems.append(f"manifest: {text}")

    problems.extend(f"manifest: {p}" for p in identity_problems(manifest))
    problems.extend(f"manifest: {p}" for p in _label_values_problems(manifest.get("labels"), "labels"))
    app = manifest.get("app")
    if app is not None:
        need(isinstance(app, Mapping), "app is not an object")
        if isinstance(app, Mapping):
            problems.extend(f"manifest: {p}" for p in _app_problems(app))
    dependencies = manifest.get("dependencies") or []
    need(isinstance(dependencies, list), "dependencies is not a list")
    for i, dep in enumerate(dependencies if isinstance(dependencies, list) else []):
        where = f"dependencies[{i}]"
        if not isinstance(dep, Mapping):
            problems.append(f"manifest: {where} is not an object")
            continue
        dep_name = dep.get("imageName")
        need(isinstance(dep_name, str) and bool(AC_IDENTIFIER.fullmatch(dep_name)),
             f"{where}.imageName {dep_name!r} is not an AC identifier")
        image_id = dep.get("imageID")
        need(image_id is None or (isinstance(image_id, str) and bool(IMAGE_ID.fullmatch(image_id))),
             f"{where}.imageID {image_id!r} is not sha512-<hex>")
        problems.extend(f"manifest: {p}" for p in _labels_problems(dep.get("labels"), f"{where}.labels"))
        problems.extend(f"manifest: {p}" for p in _label_values_problems(dep.get("labels"), f"{where}.labels"))
        need("size" not in dep or _is_uint(dep["size"]), f"{where}.size {dep.get('size')!r} is not a byte count")
    problems.extend(f"manifest: {p}" for p in _annotations_problems(manifest.get("annotations"), "annotations"))
    whitelist = manifest.get("pathWhitelist") or []
    need(isinstance(whitelist, list), "pathWhitelist is not a list")
    for item in whitelist if isinstance(whitelist, list) else []:
        need(isinstance(item, str) and item.startswith("/"), f"pathWhitelist entry {item!r} is not an absolute path")
    return problems


def identity_problems(manifest: Mapping[str, Any]) -> list[str]:
    """The rules an image manifest's identity breaks (appc ``spec/types.md``): ``acKind``
    ``ImageManifest``, ``acVersion`` a semantic version, ``name`` an AC identifier,
    ``labels`` a list of AC-name/string pairs, each name once. ``run`` refuses an image
    that breaks them, as rkt does; :func:`manifest_problems` checks the rest too.

    Returns:
        One line per problem, naming the field.
    """
    problems = []
    if manifest.get("acKind") != "ImageManifest":
        problems.append("acKind must be 'ImageManifest'")
    version = manifest.get("acVersion")
    if not (isinstance(version, str) and SEMVER.fullmatch(version)):
        problems.append(f"acVersion {version!r} is not a semantic version")
    name = manifest.get("name")
    if not (isinstance(name, str) and AC_IDENTIFIER.fullmatch(name)):
        problems.append(f"name {name!r} is not an AC identifier")
    return [*problems, *_labels_problems(manifest.get("labels"), "labels")]


def _labels_problems(labels: object, where: str) -> list[str]:
    return _pairs_problems(labels, where, AC_NAME, "an AC name", noun="label", value_required=True)


def _label_values_problems(labels: object, where: str) -> list[str]:
    """What appc's schema refuses in well-formed labels (``validate`` only: the runner
    checks the platform itself): a label called ``name``, an os outside appc's table, an
    arch its os does not have."""
    if not isinstance(labels, list):
        return []
    values = {item["name"]: item["value"] for item in labels if isinstance(item, Mapping)
              and isinstance(item.get("name"), str) and isinstance(item.get("value"), str)}
    problems = [f"{where}: 'name' is not a label name"] if "name" in values else []
    if "os" in values:
        archs = VALID_OS_ARCH.get(values["os"])
        if archs is None:
            problems.append(f"{where}: os {values['os']!r} is not one of {', '.join(sorted(VALID_OS_ARCH))}")
        elif "arch" in values and values["arch"] not in archs:
            problems.append(f"{where}: arch {values['arch']!r} is not one of {', '.join(archs)} (os "
                            f"{values['os']})")
    return problems


def _pairs_problems(items: object, where: str, name_ok: re.Pattern[str], what: str, *, noun: str = "",
                    value_required: bool = False) -> list[str]:
    """A list of ``{name, value}`` strings, each name once (labels, annotations,
    environment); ``noun`` names an item in the messages (``label``)."""
    if items is None:
        return []
    if not isinstance(items, list):
        return [f"{where} is not a list"]
    called = f"{noun} " if noun else ""
    problems, names = [], set()
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) \
                or not isinstance(item.get("value") if value_required else item.get("value", ""), str):
            problems.append(f"{where}: {item!r} is not {{name, value}} strings")
            continue
        if not name_ok.fullmatch(item["name"]):
            problems.append(f"{where}: {called}{'name ' if noun else ''}{item['name']!r} is not {what}")
        if item["name"] in names:
            problems.append(f"{where}: {called}{item['name']!r} given twice")
        names.add(item["name"])
    return problems


def _annotations_problems(annotations: object, where: str) -> list[str]:
    problems = _pairs_problems(annotations, where, AC_IDENTIFIER, "an AC identifier")
    for item in annotations if isinstance(annotations, list) else []:
        if not isinstance(item, Mapping) or not isinstance(item.get("value"), str):
            continue
        value = item["value"]
        if item.get("name") == "created" and not is_rfc3339(value):
            problems.append(f"{where}: created {value!r} is not an RFC 3339 date")
        if item.get("name") in ("homepage", "documentation") and _url_scheme(value) not in ("http", "https"):
            problems.append(f"{where}: {item['name']} {value!r} is not an http or https URL")
    return problems


def _url_scheme(value: str) -> str:
    """The scheme of a URL, lower-cased, as Go's ``url.Parse`` (appc's check) reads it
    (``HTTPS://host`` and the opaque ``http:host`` are http URLs); ``""`` when it has none."""
    try:
        return urlsplit(value).scheme
    except ValueError:
        return ""


def _string_map_problems(value: object, where: str) -> list[str]:
    if value is None or (isinstance(value, Mapping)
                         and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
        return []
    return [f"{where} is not an object of strings"]


def _is_uint(value: object, low: int = 0, high: int | None = None) -> bool:
    return type(value) is int and value >= low and (high is None or value <= high)


def _port_range_fits(port: int, count: object) -> bool:
    """Whether ``count`` ports from ``port`` end by 65535 (a count of 0 is 1, as appc reads it)."""
    return type(count) is not int or port + max(count, 1) <= 65536


def _is_quantity(value: object) -> bool:
    """A resource quantity: a number, or a string such as ``500m`` or ``1Gi``."""
    if isinstance(value, str):
        return bool(QUANTITY.fullmatch(value))
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _isolator_problems(isolators: object) -> list[str]:
    if isolators is None:
        return []
    if not isinstance(isolators, list):
        return ["app.isolators is not a list"]
    problems = []
    for i, item in enumerate(isolators):
        where = f"app.isolators[{i}]"
        name = item.get("name") if isinstance(item, Mapping) else None
        value = item.get("value") if isinstance(item, Mapping) else None
        if name in RESOURCE_ISOLATORS:
            ok = isinstance(value, Mapping) and all(_is_quantity(value.get(k, 0)) for k in ("request", "limit")) \
                and isinstance(value.get("default", False), bool)
        elif name in SET_ISOLATORS:
            ok = isinstance(value, Mapping) and isinstance(value.get("set"), list) and bool(value["set"]) \
                and all(isinstance(v, str) for v in value["set"])
        elif name in INT_ISOLATORS:
            ok = type(value) is int
        elif name == "os/linux/no-new-privileges":
            ok = isinstance(value, bool)
        elif name in OTHER_ISOLATORS:
            ok = isinstance(value, Mapping)
        else:
            problems.append(f"{where}: {name!r} is not an isolator appc knows")
            continue
        if not ok:
            problems.append(f"{where}: the value of {name} is missing or malformed")
    return problems


def _app_problems(app: Mapping[str, Any]) -> list[str]:
    problems = []
    exec_ = app.get("exec")
    if exec_ is not None and (not isinstance(exec_, list) or not all(isinstance(w, str) for w in exec_)):
        problems.append("app.exec is not a list of strings")
    for key in ("user", "group"):
        if not isinstance(app.get(key), str) or not app.get(key):
            problems.append(f"app.{key} is required (a string)")
    cwd = app.get("workingDirectory")
    if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/")):
        problems.append(f"app.workingDirectory {cwd!r} is not an absolute path")
    problems += _pairs_problems(app.get("environment"), "app.environment", ENV_NAME, "an environment variable name")
    problems += _isolator_problems(app.get("isolators"))
    problems += _string_map_problems(app.get("userAnnotations"), "app.userAnnotations")  # a map, unlike annotations
    problems += _string_map_problems(app.get("userLabels"), "app.userLabels")
    handlers = app.get("eventHandlers") or []
    if not isinstance(handlers, list):
        problems.append("app.eventHandlers is not a list")
    else:
        kinds = [h.get("name") if isinstance(h, Mapping) else None for h in handlers]
        for kind in kinds:
            if kind not in EVENT_HANDLERS:
                problems.append(f"app.eventHandlers: {kind!r} is not one of {', '.join(EVENT_HANDLERS)}")
        for kind in EVENT_HANDLERS:
            if kinds.count(kind) > 1:
                problems.append(f"app.eventHandlers: {kind!r} given twice")
    for kind in ("mountPoints", "ports"):
        items = app.get(kind) or []
        if not isinstance(items, list):
            problems.append(f"app.{kind} is not a list")
            continue
        for item in items:
            if not isinstance(item, Mapping):
                problems.append(f"app.{kind}: {item!r} is not an object")
            elif kind == "ports" and not (_is_uint(item.get("port"), 1, 65535)
                                          and isinstance(item.get("protocol", ""), str)
                                          and _is_uint(item.get("count", 0))
                                          and _port_range_fits(item["port"], item.get("count", 0))
                                          and isinstance(item.get("socketActivated", False), bool)):
                problems.append(f"app.ports: {item.get('name')!r}: port 1-65535, protocol, count or "
                                "socketActivated malformed")
            elif kind == "mountPoints" and not (isinstance(item.get("path", ""), str)
                                                and isinstance(item.get("readOnly", False), bool)):
                problems.append(f"app.mountPoints: {item.get('name')!r}: path or readOnly malformed")
        names = [item.get("name") for item in items if isinstance(item, Mapping)]
        for item_name in names:
            if not isinstance(item_name, str) or not AC_NAME.fullmatch(item_name):
                problems.append(f"app.{kind}: name {item_name!r} is not an AC name")
        if len(set(map(str, names))) != len(names):
            problems.append(f"app.{kind}: a name is given twice")
    return problems


def inspect_aci(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe an ACI: name, labels, image ID, file size (bytes), compression, entries,
    and the images it is made of (itself and its dependencies: ``layers``).

    Raises:
        RunnerError: the file cannot be read or is not an ACI.
    """
    report = validate_aci(path)
    if report.manifest is None or report.image_id is None:
        raise RunnerError(f"{report.path}: not an ACI: {'; '.join(report.problems)}")
    manifest = report.manifest
    with open(report.path, "rb") as handle:
        head = handle.read(8)
    compression = compression_name(head)
    labels = {item["name"]: item["value"] for item in manifest.get("labels") or []
              if isinstance(item, Mapping) and isinstance(item.get("name"), str)}
    dependencies = manifest.get("dependencies") or []
    dependencies = [dep for dep in dependencies if isinstance(dep, Mapping)] if isinstance(dependencies, list) else []
    return {
        "path": report.path,
        "name": manifest.get("name"),
        "labels": labels,
        "image_id": report.image_id,
        "size": os.path.getsize(report.path),
        "compression": compression,
        "entries": report.entries,
        "layers": 1 + len(dependencies),
        "dependencies": dependencies,
        "manifest": manifest,
        "problems": report.problems,
    }

