"""Check and describe ACI files: ``docker2aci validate`` and ``docker2aci inspect``.

:func:`validate_aci` checks an ACI against the appc spec (``spec/aci.md``, "Image
Archives" and "Image Layout"; ``spec/types.md``, "Image Manifest Schema" and the AC Name
and AC Identifier types): what ``actool validate`` checks (a readable archive with a
``rootfs`` directory entry, the manifest's schema: the type of every field, labels against
appc's os/arch table, annotations with their ``created`` and ``homepage``/``documentation``
formats, environment names, isolators with their values, ranges and counts, ports, mount
points, event handlers) and the rules it lets through: nothing at the top but ``manifest``
and ``rootfs/``, no entry twice, hard links to files of ``rootfs/`` that exist before them,
absolute ``pathWhitelist`` entries, well-formed dependencies, no JSON key twice in the
manifest. Where actool departs from the spec (it reads JSON keys in any case, takes
``a..b`` as an AC identifier, ``rootfsx`` as under ``rootfs``, and ``null`` for any string,
number or boolean), the spec is followed. It reads the archive once, as a stream, and
never writes anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from converters.manifest import is_rfc3339
from docker2aci.acifile import check_end, open_tar
from docker2aci.errors import RunnerError
from runner.extract import (MAX_MANIFEST_BYTES, archive_components, compression_name, errors_named,
                            open_uncompressed, parse_manifest)
from runner.volumes import AC_NAME

#: AC Identifier (``spec/types.md``): lowercase, digits and ``-._~/``, starting and
#: ending with a letter or digit.
AC_IDENTIFIER = re.compile(r"[a-z0-9]+(?:[-._~/][a-z0-9]+)*")
#: acVersion: a semantic version (SemVer 2.0.0: no pre-release or build identifier is empty).
SEMVER = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)(-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
                    r"(\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?")
#: The largest number of a version appc's reader holds (go-semver's int64).
MAX_VERSION_NUMBER = 2**63 - 1
#: The largest unsigned integer (a dependency's ``size``: Go's ``uint``).
MAX_UINT64 = 2**64 - 1
IMAGE_ID = re.compile(r"sha512-[0-9a-f]{1,128}")
#: The os label's values, and the arch values each allows (appc 0.8.11, ``ValidOSArch``).
VALID_OS_ARCH = {
    "linux": ("amd64", "i386", "aarch64", "aarch64_be", "armv6l", "armv7l", "armv7b", "ppc64", "ppc64le", "s390x"),
    "freebsd": ("amd64", "i386", "arm"),
    "darwin": ("x86_64", "i386"),
}
#: An environment variable's name (appc 0.8.11).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9.-]*")
#: A resource quantity (appc ``spec/ace.md``, "Resource Isolators", as Kubernetes'): a
#: number, then a metric suffix (``500m``, ``1G``; the spec's ``K`` too), a binary one
#: (``1Gi``) or an exponent (``1e3``).
QUANTITY = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]*)(?:[numkKMGTPE]|[KMGTPE]i|[eE][+-]?[0-9]+)?")
#: The resource isolators appc 0.8.11 knows, each with the ``default`` it must have (true:
#: the limit applies to every device, and it takes no ``request``).
RESOURCE_ISOLATORS = {"resource/cpu": False, "resource/memory": False, "resource/block-bandwidth": True,
                      "resource/block-iops": True, "resource/network-bandwidth": True}
SET_ISOLATORS = frozenset({"os/linux/capabilities-retain-set", "os/linux/capabilities-remove-set",
                           "os/linux/seccomp-retain-set", "os/linux/seccomp-remove-set"})
#: The integer isolators and their ranges (appc 0.8.11).
INT_ISOLATORS = {"os/linux/oom-score-adj": (-1000, 1000), "os/linux/cpu-shares": (2, 262144)}
#: The isolators an app gives at most once (``spec/ace.md``; appc's ``multipleAllowed``).
SINGLE_ISOLATORS = frozenset({"os/linux/seccomp-retain-set", "os/linux/seccomp-remove-set", *INT_ISOLATORS,
                              "os/linux/selinux-context", "os/unix/sysctl"})
#: Isolators that cannot be given together (``spec/ace.md``: the two seccomp sets).
CONFLICTING_ISOLATORS = {"os/linux/seccomp-retain-set": "os/linux/seccomp-remove-set",
                         "os/linux/seccomp-remove-set": "os/linux/seccomp-retain-set"}
#: The parts of an ``os/linux/selinux-context`` value.
SELINUX_FIELDS = ("user", "role", "type", "level")
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
    with contextlib.suppress(OSError):  # a missing file: _scan says so, as it reads
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO was read for ever, a directory "Is a directory"
            report.problems.append("not a regular file")
            return report
    try:
        image = _scan(report)
    except RunnerError as err:
        report.problems.append(str(err))  # unreadable: whether it has a manifest is unknown
    else:
        if report.manifest is None and image is not None:  # one line, not one per entry at the top
            what, transport = image
            report.problems = [f"{what} (no 'manifest' entry): convert it first, "
                               f"docker2aci {transport}:{report.path}"]
        elif report.manifest is None and not any("manifest" in p for p in report.problems):
            report.problems.append("no manifest entry")
    if report.manifest is not None:
        report.problems.extend(manifest_problems(report.manifest))
    return report


_IMAGE_ARCHIVES = {"manifest.json": ("a docker save archive", "docker-archive"),
                   "oci-layout": ("an OCI image archive", "oci-archive")}
"""Top-level entries that mark an archive of a container image (what ``docker save`` and
``skopeo copy ... oci-archive:`` write): what it is, and docker2aci's transport for it
(Docker 25+ saves hold both marks: ``docker-archive:`` reads them)."""


def _scan(report: Report) -> tuple[str, str] | None:
    """Read the whole archive into ``report``; returns what kind of image archive it is
    and its transport (:data:`_IMAGE_ARCHIVES`) when its top holds one's mark, else ``None``."""
    seen: set[str] = set()
    directories: set[str] = set()
    rootfs_seen = False
    image = None
    last: str | None = None
    with errors_named("reading", report.path), open_uncompressed(report.path) as stream, open_tar(stream) as archive:
        while (member := archive.next()) is not None:
            report.entries += 1
            last = member.name
            try:
                parts = archive_components(member.name)
            except RunnerError as err:
                report.problems.append(str(err))
                continue
            if not parts and member.isdir():
                continue  # the archive's own root, "./": what `tar -C LAYOUT -cf IMAGE.aci .` writes
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
                raw = data.read()
                try:
                    report.manifest = parse_manifest(raw)
                except RunnerError as err:
                    report.problems.append(f"entry 'manifest': {err}")
                else:
                    report.problems.extend(f"entry 'manifest': key {key!r} given twice in one object"
                                           for key in _keys_given_twice(raw))
                continue
            if not parts or parts[0] != "rootfs":
                report.problems.append(f"entry {member.name!r}: only 'manifest' and 'rootfs/' may be at the top")
                if name in _IMAGE_ARCHIVES and (image is None or name == "manifest.json"):
                    image = _IMAGE_ARCHIVES[name]
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
        check_end(archive, stream, last)
        report.image_id = stream.image_id()
    if not rootfs_seen:  # entries under rootfs/ do not make it (spec/aci.md: "rootfs (a directory)")
        report.problems.append("no 'rootfs' directory entry")
    return image


def _keys_given_twice(raw: bytes) -> list[str]:
    """The keys an object of a parsed manifest gives more than once, each named once
    however many objects give it twice: JSON readers differ on which one counts (Python's
    and Go's take the last, appc's schema checks each, others take the first), so the image
    would not be the same for all (RFC 8259: names SHOULD be unique)."""
    twice: dict[str, None] = {}

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        twice.update((key, None) for key, count in Counter(key for key, _ in items).items() if count > 1)
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    return list(twice)


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
    dependencies = _list_field(manifest, "dependencies", problems.append, "manifest: ")
    for i, dep in enumerate(dependencies):
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
        need("size" not in dep or _is_int(dep["size"], 0, MAX_UINT64),
             f"{where}.size {dep.get('size')!r} is not a byte count")
    problems.extend(f"manifest: {p}" for p in _annotations_problems(manifest.get("annotations"), "annotations"))
    for item in _list_field(manifest, "pathWhitelist", problems.append, "manifest: "):
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
    if not (isinstance(version, str) and _is_ac_version(version)):
        problems.append(f"acVersion {version!r} is not a semantic version above 0.0.0")
    name = manifest.get("name")
    if not (isinstance(name, str) and AC_IDENTIFIER.fullmatch(name)):
        problems.append(f"name {name!r} is not an AC identifier")
    return [*problems, *_labels_problems(manifest.get("labels"), "labels")]


def _is_ac_version(text: str) -> bool:
    """Whether ``text`` is an AC Version (``spec/types.md``): SemVer 2.0.0, not ``0.0.0``
    (a version no specification had), of numbers appc's reader holds."""
    match = SEMVER.fullmatch(text)
    if match is None:
        return False
    digits = [n.lstrip("0") for n in match.groups()[:3]]
    if any(len(n) > len(str(MAX_VERSION_NUMBER)) for n in digits):  # too large: int() refuses past 4300 digits
        return False
    numbers = [int(n or "0") for n in digits]
    return max(numbers) <= MAX_VERSION_NUMBER and any([*numbers, match[4], match[5]])


def _labels_problems(labels: object, where: str) -> list[str]:
    """Labels: a list of ``{name, value}`` strings, each name an AC identifier
    (``spec/aci.md``: ``example.com/key`` is a label name), given once."""
    return _pairs_problems(labels, where, AC_IDENTIFIER, "an AC identifier", noun="label", value_required=True)


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
        if item.get("name") in ("homepage", "documentation") and not _is_http_url(value):
            problems.append(f"{where}: {item['name']} {value!r} is not an http or https URL")
    return problems


#: A ``%`` that does not start a percent-encoded byte (RFC 3986, section 2.1).
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
#: The user information of a URL (RFC 3986, section 3.2.1).
_URL_USERINFO = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:%-]*")
#: A URL's host and port (RFC 3986, section 3.2.2: an IP literal in brackets, or a name of
#: unreserved, sub-delims and percent-encoded characters, and non-ASCII ones as in an IRI,
#: which appc's reader takes too), then a numeric port.
_URL_HOST_PORT = re.compile(r"(?:\[[0-9A-Za-z._~:%-]*\]|(?:[A-Za-z0-9._~!$&'()*+,;=%-]|[^\x00-\x7f])*)(?::[0-9]*)?")


def _is_http_url(value: str) -> bool:
    """Whether ``value`` is an http or https URL (``spec/aci.md``, ``homepage`` and
    ``documentation``): its scheme in any case, as Go's ``url.Parse`` (appc's check) reads
    it (``HTTPS://host``, and the opaque ``http:host``), no control character, a ``%`` only
    before two hex digits, user information and a host of the characters RFC 3986 allows
    there (a space, ``{`` or ``|`` is refused, as appc refuses it) and a numeric port."""
    if _CONTROL_CHARACTER.search(value) or _BAD_PERCENT.search(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # an unclosed "[" of an IPv6 literal
        return False
    userinfo, _, host_port = parts.netloc.rpartition("@")
    return (value.partition(":")[0].lower() in ("http", "https") and bool(_URL_USERINFO.fullmatch(userinfo))
            and bool(_URL_HOST_PORT.fullmatch(host_port)))


def _string_map_problems(value: object, where: str) -> list[str]:
    if value is None or _is_string_map(value):
        return []
    return [f"{where} is not an object of strings"]


def _is_string_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _is_strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_int(value: object, low: int = 0, high: int | None = None) -> bool:
    return type(value) is int and value >= low and (high is None or value <= high)


def _list_field(obj: Mapping[str, Any], key: str, report: Callable[[str], None], where: str = "") -> list[Any]:
    """``obj[key]`` when it is a list, ``[]`` when absent or ``null``; anything else
    (``{}``, ``""`` too) is reported as ``<where><key> is not a list``."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        report(f"{where}{key} is not a list")
        return []
    return value


def _port_range_fits(port: int, count: object) -> bool:
    """Whether ``count`` ports from ``port`` end by 65535 (a count of 0 is 1, as appc reads it)."""
    return type(count) is not int or port + max(count, 1) <= 65536


def _is_quantity(value: object) -> bool:
    """A resource quantity: a number, or a string such as ``500m`` or ``1Gi``."""
    if isinstance(value, str):
        return bool(QUANTITY.fullmatch(value))
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_errno_name(text: str) -> bool:
    """An errno name as appc reads one: ``E``, then upper-case letters and digits."""
    return text[:1] == "E" and all(unicodedata.category(c) in ("Lu", "Nd", "Nl", "No") for c in text)


def _resource_problem(name: str, value: object) -> str | None:
    if not (isinstance(value, Mapping) and all(_is_quantity(value[key]) for key in ("request", "limit") if key in value)
            and isinstance(value.get("default", False), bool)):
        return f"the value of {name} is missing or malformed"
    every_device = RESOURCE_ISOLATORS[name]
    if value.get("default", False) is not every_device:
        return f"{name}: default must be {str(every_device).lower()}"
    if every_device and "request" in value:
        return f"{name}: takes a limit, not a request"
    return None


def _set_problem(name: str, value: object) -> str | None:
    if not (isinstance(value, Mapping) and _is_strings(value.get("set")) and value["set"]):
        return f"the value of {name} is missing or malformed"
    errno = value.get("errno", "") if name.startswith("os/linux/seccomp-") else ""
    if not isinstance(errno, str) or (errno and not _is_errno_name(errno)):
        return f"{name}: errno {errno!r} is not an errno name (ENOSYS, EPERM ...)"
    return None


def _int_problem(name: str, value: object) -> str | None:
    low, high = INT_ISOLATORS[name]
    if type(value) is not int:
        return f"the value of {name} is missing or malformed"
    if not low <= value <= high:
        return f"{name}: {value} is not between {low} and {high}"
    return None


def _selinux_problem(name: str, value: object) -> str | None:
    if not (isinstance(value, Mapping) and all(isinstance(value.get(key, ""), str) for key in SELINUX_FIELDS)):
        return f"the value of {name} is missing or malformed"
    for key in SELINUX_FIELDS:
        part = value.get(key, "")
        if not part or (key != "level" and ":" in part):
            return f"{name}: {key} {part!r} is empty" + ("" if key == "level" else " or holds ':'")
    return None


def _kind_problem(check: Callable[[object], bool]) -> Callable[[str, object], str | None]:
    return lambda name, value: None if check(value) else f"the value of {name} is missing or malformed"


#: How each isolator appc 0.8.11 knows checks its value (``spec/ace.md``, "Isolators"):
#: a problem, or ``None``.
ISOLATOR_CHECKS: dict[str, Callable[[str, object], str | None]] = {
    **dict.fromkeys(RESOURCE_ISOLATORS, _resource_problem),
    **dict.fromkeys(SET_ISOLATORS, _set_problem),
    **dict.fromkeys(INT_ISOLATORS, _int_problem),
    "os/linux/no-new-privileges": _kind_problem(lambda value: isinstance(value, bool)),
    "os/linux/selinux-context": _selinux_problem,
    "os/unix/sysctl": _kind_problem(_is_string_map),
}


def _isolator_problems(isolators: object) -> list[str]:
    if isolators is None:
        return []
    if not isinstance(isolators, list):
        return ["app.isolators is not a list"]
    problems = []
    seen: set[str] = set()
    for i, item in enumerate(isolators):
        where = f"app.isolators[{i}]"
        name = item.get("name") if isinstance(item, Mapping) else None
        check = ISOLATOR_CHECKS.get(name) if isinstance(name, str) else None
        if check is None:
            problems.append(f"{where}: {name!r} is not an isolator appc knows")
            continue
        problem = check(name, item.get("value"))
        if problem is not None:
            problems.append(f"{where}: {problem}")
        if name in seen and name in SINGLE_ISOLATORS:
            problems.append(f"{where}: {name} given twice (once per app)")
        if CONFLICTING_ISOLATORS.get(name) in seen:
            problems.append(f"{where}: {name} cannot be given with {CONFLICTING_ISOLATORS[name]}")
        seen.add(name)
    return problems


def _app_problems(app: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    exec_ = app.get("exec")
    if exec_ is not None and not _is_strings(exec_):
        problems.append("app.exec is not a list of strings")
    for key in ("user", "group"):
        if not isinstance(app.get(key), str) or not app.get(key):
            problems.append(f"app.{key} is required (a string)")
    gids = app.get("supplementaryGIDs")
    if gids is not None and not (isinstance(gids, list) and all(_is_int(g, -2**63, 2**63 - 1) for g in gids)):
        problems.append("app.supplementaryGIDs is not a list of integers")
    cwd = app.get("workingDirectory")
    if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/")):
        problems.append(f"app.workingDirectory {cwd!r} is not an absolute path")
    problems += _pairs_problems(app.get("environment"), "app.environment", ENV_NAME, "an environment variable name")
    problems += _isolator_problems(app.get("isolators"))
    problems += _string_map_problems(app.get("userAnnotations"), "app.userAnnotations")  # a map, unlike annotations
    problems += _string_map_problems(app.get("userLabels"), "app.userLabels")
    handlers = _list_field(app, "eventHandlers", problems.append, "app.")
    kinds = [h.get("name") if isinstance(h, Mapping) else None for h in handlers]
    for kind, handler in zip(kinds, handlers):
        if kind not in EVENT_HANDLERS:
            problems.append(f"app.eventHandlers: {kind!r} is not one of {', '.join(EVENT_HANDLERS)}")
        elif handler.get("exec") is not None and not _is_strings(handler["exec"]):
            problems.append(f"app.eventHandlers: {kind}: exec is not a list of strings")
    for kind in EVENT_HANDLERS:
        if kinds.count(kind) > 1:
            problems.append(f"app.eventHandlers: {kind!r} given twice")
    for kind in ("mountPoints", "ports"):
        items = _list_field(app, kind, problems.append, "app.")
        for item in items:
            if not isinstance(item, Mapping):
                problems.append(f"app.{kind}: {item!r} is not an object")
            elif kind == "ports" and not (_is_int(item.get("port"), 1, 65535)
                                          and isinstance(item.get("protocol", ""), str)
                                          and _is_int(item.get("count", 0))
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
        if len(set(map(str, names))) != len(names):  # the key a pod's volumes and ports name them by
            problems.append(f"app.{kind}: a name is given twice")
    return problems


def inspect_aci(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe an ACI: name, labels, image ID, file size (bytes), compression, entries,
    and the images it is made of (itself and its dependencies: ``layers``).

    Raises:
        RunnerError: the file cannot be read or is not an ACI.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as err:  # not "not an ACI": whether it is one is unknown
        raise RunnerError(f"{os.fspath(path)}: {err.strerror or err}") from err
    if not stat.S_ISREG(mode):
        raise RunnerError(f"{os.fspath(path)}: not a regular file")
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

