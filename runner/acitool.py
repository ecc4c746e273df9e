"""Check and describe ACI files: ``docker2aci validate`` and ``docker2aci inspect``.

:func:`validate_aci` checks an ACI against the appc spec (``spec/aci.md``, "Image
Archives" and "Image Layout"; ``spec/types.md``, "Image Manifest Schema" and the AC Name
and AC Identifier types): what ``actool validate`` checks (a readable archive, the
manifest's schema) and the rules it lets through: nothing at the top but ``manifest`` and
``rootfs/``, no entry twice, hard links to entries that exist before them, absolute
``pathWhitelist`` entries, well-formed dependencies. It reads the archive once, as a
stream, and never writes anything.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    rootfs_seen = False
    with errors_named("reading", report.path), open_uncompressed(report.path) as stream, tarfile.open(
        fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape"
    ) as archive:
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
    if labels is None:
        return []
    if not isinstance(labels, list):
        return [f"{where} is not a list"]
    problems, names = [], set()
    for item in labels:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) \
                or not isinstance(item.get("value"), str):
            problems.append(f"{where}: {item!r} is not {{name, value}} strings")
            continue
        if not AC_NAME.fullmatch(item["name"]):
            problems.append(f"{where}: label name {item['name']!r} is not an AC name")
        if item["name"] in names:
            problems.append(f"{where}: label {item['name']!r} given twice")
        names.add(item["name"])
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
    for kind in ("mountPoints", "ports"):
        items = app.get(kind) or []
        if not isinstance(items, list):
            problems.append(f"app.{kind} is not a list")
            continue
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
    return {
        "path": report.path,
        "name": manifest.get("name"),
        "labels": labels,
        "image_id": report.image_id,
        "size": os.path.getsize(report.path),
        "compression": compression,
        "entries": report.entries,
        "layers": 1 + len(manifest.get("dependencies") or []),
        "dependencies": manifest.get("dependencies") or [],
        "manifest": manifest,
        "problems": report.problems,
    }

