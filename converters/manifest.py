"""Image config (+ naming inputs) → appc image manifest (appc spec/aci.md "Image Manifest").

Pure: no I/O, no environment. Facts from the rootfs (``/etc/passwd``, ``/etc/group``)
come in as text. The rules are those of ``decisions.md`` ("Manifest"), which keep the
reference tool's names, labels and annotations and fix where it was wrong.
"""

from __future__ import annotations

import datetime
import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import BadConfig
from .names import sanitize_ac_identifier, sanitize_ac_name
from .numbers import plain_decimal

AC_KIND = "ImageManifest"
AC_VERSION = "0.8.11"
ANN = "appc.io/docker/"

_SURROGATE = re.compile("[\ud800-\udfff]")
"""Lone surrogates (undecodable bytes); Go's encoding/json writes U+FFFD for them."""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z_0-9.-]*$")
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-](\d{2}):(\d{2}))$", re.ASCII
)
"""RFC 3339 as Go's ``time.Parse(time.RFC3339, ...)`` reads it: ``T`` and ``Z`` upper-case only
(RFC 3339 allows ``t`` and ``z``; Go, and so appc's validator, refuses them)."""
_PORT_KEY = re.compile(r"^(\d{1,10})(?:-(\d{1,10}))?(?:/([A-Za-z0-9]*))?$", re.ASCII)
"""``port[-end][/proto]``; an empty ``proto`` (``80/``) is ``tcp``, as go-connections'
``nat.SplitProtoPort`` reads it (Docker's daemon parses ``ExposedPorts`` keys with it)."""


def _str_list(value: Any, fieldname: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):  # a bare string is Docker's shell form left unsplit
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadConfig(fieldname, "is not a list of strings")
    return tuple(value)


def _str_map_keys(value: Any, fieldname: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise BadConfig(fieldname, "is not an object")
    return tuple(value)


def _opt_str(value: Any, fieldname: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadConfig(fieldname, "is not a string")
    return value


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config / Docker image JSON the manifest is made from.

    Spec: image-spec config.md; Docker's v1 image JSON for legacy archives.

    Attributes:
        os, architecture, variant: the platform the config declares (``""`` if absent).
        author, created: as written.
        user: ``config.User``.
        exposed_ports: keys of ``config.ExposedPorts`` (or legacy ``PortSpecs``).
        env: ``config.Env`` entries as written.
        entrypoint, cmd: ``config.Entrypoint`` / ``config.Cmd``, ``None`` when unset.
        volumes: keys of ``config.Volumes``.
        working_dir: ``config.WorkingDir``.
        labels: ``config.Labels``.
        diff_ids: ``rootfs.diff_ids`` as strings, base layer first.
        has_app: the config has a ``config`` object (empty or not); without one the
            image has no app, as the reference writes it (a dependency image).
    """

    os: str = ""
    architecture: str = ""
    variant: str = ""
    author: str = ""
    created: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    diff_ids: tuple[str, ...] = ()
    has_app: bool = True

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ImageConfig:
        """Read a decoded image config.

        Raises:
            BadConfig: a field has the wrong type (names the field).
        """
        cfg = {} if doc.get("config") is None else doc["config"]
        if not isinstance(cfg, dict):  # [] or false too: nothing to read an app from is an error, not an empty app
            raise BadConfig("config", "is not an object")
        ports = _str_map_keys(cfg.get("ExposedPorts"), "config.ExposedPorts")
        if cfg.get("ExposedPorts") is None and cfg.get("PortSpecs"):
            ports = _str_list(cfg.get("PortSpecs"), "config.PortSpecs") or ()
        labels = cfg.get("Labels") or {}
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise BadConfig("config.Labels", "is not a map of strings")
        rootfs = {} if doc.get("rootfs") is None else doc["rootfs"]
        if not isinstance(rootfs, dict):
            raise BadConfig("rootfs", "is not an object")
        if rootfs.get("type", "layers") != "layers":  # image-spec config.md: MUST be "layers"
            raise BadConfig("rootfs.type", f"is {rootfs['type']!r}, not 'layers'")
        return cls(
            os=_opt_str(doc.get("os"), "os"),
            architecture=_opt_str(doc.get("architecture"), "architecture"),
            variant=_opt_str(doc.get("variant"), "variant"),
            author=_opt_str(doc.get("author"), "author"),
            created=_opt_str(doc.get("created"), "created"),
            user=_opt_str(cfg.get("User"), "config.User"),
            exposed_ports=ports,
            env=_str_list(cfg.get("Env"), "config.Env") or (),
            entrypoint=_str_list(cfg.get("Entrypoint"), "config.Entrypoint"),
            cmd=_str_list(cfg.get("Cmd"), "config.Cmd"),
            volumes=_str_map_keys(cfg.get("Volumes"), "config.Volumes"),
            working_dir=_opt_str(cfg.get("WorkingDir"), "config.WorkingDir"),
            labels=dict(labels),
            diff_ids=_str_list(rootfs.get("diff_ids"), "rootfs.diff_ids") or (),
            has_app=doc.get("config") is not None,
        )


@dataclass(frozen=True)
class Naming:
    """Where the image came from, as the manifest's name, labels and annotations say it.

    Attributes:
        name: the AC name before sanitising (``test/busybox``,
            ``registry-1.docker.io/library/busybox``).
        repository: the repository (``test/busybox``).
        tag: the tag, ``None`` for digest-only references.
        original_name: the image's own reference (``appc.io/docker/originalname``).
        registry_url: the registry host, for registry sources only.
        image_id: the config digest (``sha256:<hex>``).
        manifest_hash: the manifest digest, or the config digest when there is none.
        manifest_list_hash: the index / manifest list digest, when selected from one.
        parent_image_id: the layer below, for per-layer (``--nosquash``) ACIs.
    """

    name: str
    repository: str
    tag: str | None
    original_name: str | None
    registry_url: str | None
    image_id: str
    manifest_hash: str
    manifest_list_hash: str | None = None
    parent_image_id: str | None = None


@dataclass(frozen=True)
class Result:
    """A translated manifest.

    Attributes:
        manifest: the appc image manifest, as ordered JSON-ready dicts.
        warnings: what was dropped or changed, one sentence each.
    """

    manifest: dict[str, Any]
    warnings: tuple[str, ...]


def parse_passwd(text: str) -> dict[str, tuple[int, int]]:
    """``/etc/passwd`` text → name → (uid, gid); malformed lines are skipped."""
    users: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4:
            uid, gid = plain_decimal(parts[2], _ID_DIGITS), plain_decimal(parts[3], _ID_DIGITS)
            if uid is not None and gid is not None:
                users.setdefault(parts[0], (uid, gid))
    return users


_ID_DIGITS = 10
"""A uid or gid has at most this many decimal digits (32 bits)."""


def user_group(user_spec: str, passwd: str | None) -> tuple[str, str]:
    """Docker ``USER`` → appc ``user``/``group``.

    ``u:g`` → ``u``/``g`` as written, fields past the second ignored as runc's
    ``parseLine`` and the reference's ``parseDockerUser`` ignore them; ``u`` alone (or
    ``u:``) → the numeric primary gid of ``u`` (by name or uid) from the image's
    ``/etc/passwd``, else ``0`` (Docker's rule; a numeric ``u`` is a uid, as runc reads
    it); ``""`` is ``0``/``0`` (decisions.md). Names are resolved later by the runner.
    """
    user, _, rest = user_spec.partition(":")
    group = rest.partition(":")[0]
    if not user and not group:
        return "0", "0"  # decisions.md: USER empty → 0/0, whatever root's passwd line says
    user = user or "0"
    if group:
        return user, group
    users = parse_passwd(passwd or "")
    if (number := plain_decimal(user, _ID_DIGITS)) is not None:
        # a numeric USER is always a uid (runc's GetExecUser), even if a user is named so
        for uid, gid in users.values():
            if uid == number:
                return user, str(gid)
    elif user in users:
        return user, str(users[user][1])
    return user, "0"


def _ports(keys: tuple[str, ...]) -> list[dict[str, Any]]:
    ports: dict[str, dict[str, Any]] = {}
    for key in keys:
        m = _PORT_KEY.fullmatch(key.strip())
        if not m:
            raise BadConfig("config.ExposedPorts", f"cannot parse port {key!r}")
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else start
        proto = (m.group(3) or "tcp").lower()
        count = end - start + 1
        if not 1 <= start <= 65535 or count < 1 or start + count > 65536:
            raise BadConfig("config.ExposedPorts", f"port {key!r} is outside 1-65535")
        spec = f"{start}-{end}" if m.group(2) else str(start)
        name = sanitize_ac_name(f"{spec}-{proto}")
        ports.setdefault(name, {"name": name, "protocol": proto, "port": start,
                                "count": count, "socketActivated": False})
    return [ports[n] for n in sorted(ports)]


def _mount_points(volumes: tuple[str, ...], warnings: list[str]) -> list[dict[str, Any]]:
    """``config.Volumes`` → ``mountPoints``, named ``volume-<path>`` from the cleaned path
    as the reference names them (``filepath.Join("volume", p)``: ``/a/../c`` is
    ``volume-c``), a repeat numbered; an empty path is dropped and a relative one made
    absolute, each with a warning (appc mounts at absolute paths)."""
    named: list[tuple[str, str]] = []
    for path in sorted(volumes):
        if not path.strip():
            warnings.append(f"volume {path!r} names no path; dropped")
            continue
        if not path.startswith("/"):
            warnings.append(f"relative volume path {path!r} made absolute")
            path = "/" + path
        named.append((sanitize_ac_name("volume/" + posixpath.normpath(path)), path))
    natural = {base for base, _ in named}  # a suffix never takes a name some path has of its own
    taken: dict[str, int] = {}
    points: dict[str, dict[str, Any]] = {}
    for base, path in named:
        name = base
        while name in points or (name != base and name in natural):
            taken[base] = taken.get(base, 0) + 1
            name = f"{base}-{taken[base]}"
        points[name] = {"name": name, "path": path}
    return [points[n] for n in sorted(points)]


def _environment(env: tuple[str, ...], warnings: list[str]) -> tuple[list[dict[str, str]], list[str]]:
    values: dict[str, str] = {}
    rejected: list[str] = []
    for entry in env:
        name, sep, value = entry.partition("=")
        if not sep:
            warnings.append(f"environment entry {entry!r} has no '='; dropped")
            rejected.append(entry)
        elif not _ENV_NAME.fullmatch(name):
            warnings.append(f"environment variable name {name!r} is not valid in appc; dropped")
            rejected.append(entry)
        else:
            values[name] = value
    return [{"name": k, "value": v} for k, v in values.items()], rejected


def build_manifest(config: ImageConfig, naming: Naming, os_arch: tuple[str, str],
                   passwd: str | None = None) -> Result:
    """Translate an image config into an appc image manifest.

    Args:
        config: the parsed image config.
        naming: name, tag and provenance of the image.
        os_arch: appc ``os`` and ``arch`` label values (see ``names.appc_os_arch``).
        passwd: the image's ``/etc/passwd`` text, to find the group of a bare USER.

    Returns:
        the manifest (keys in appc's schema order) and the warnings.

    Raises:
        BadConfig: a field cannot be expressed in appc (bad port, no valid name).
    """
    warnings: list[str] = []
    labels = {"os": os_arch[0], "arch": os_arch[1]}
    if naming.tag:
        labels["version"] = naming.tag

    user, group = user_group(config.user, passwd)
    app: dict[str, Any] = {}
    entrypoint = config.entrypoint
    if entrypoint == ("",):  # ENTRYPOINT [""], Docker's way to reset an inherited one
        # (moby's mergeAndVerifyConfig): no exec word, but the annotation keeps it as stored
        warnings.append("config.Entrypoint [\"\"] resets the entrypoint: none used")
        entrypoint = None
    exec_ = list(entrypoint or ()) + list(config.cmd or ())
    if exec_:
        app["exec"] = exec_
    app["user"] = user
    app["group"] = group
    if config.working_dir:
        wd = config.working_dir
        if not wd.startswith("/"):
            # Docker runs it from / (moby's SetupWorkingDirectory cleans it, and the
            # container's root scopes it): "./app" is /app, "." is /
            warnings.append(f"relative working directory {wd!r} made absolute")
            wd = posixpath.normpath("/" + wd)
        app["workingDirectory"] = wd
    environment, rejected = _environment(config.env, warnings)
    if environment:
        app["environment"] = environment
    mount_points = _mount_points(config.volumes, warnings)
    if mount_points:
        app["mountPoints"] = mount_points
    ports = _ports(config.exposed_ports)
    if ports:
        app["ports"] = ports
    if config.labels:
        app["userLabels"] = dict(sorted(config.labels.items()))

    created = config.created
    if created and not is_rfc3339(created):
        warnings.append(f"created {created!r} is not RFC 3339; annotation dropped")
        created = ""
    annotations = [
        ("authors", config.author),
        ("created", created),
        *_provenance(naming),
        (ANN + "entrypoint", go_json(list(config.entrypoint)) if config.entrypoint else None),
        (ANN + "cmd", go_json(list(config.cmd)) if config.cmd else None),
        (ANN + "tag", naming.tag),
        (ANN + "env-rejected", go_json(rejected) if rejected else None),
    ]
    manifest: dict[str, Any] = {
        "acKind": AC_KIND,
        "acVersion": AC_VERSION,
        "name": sanitize_ac_identifier(naming.name),
        "labels": [{"name": k, "value": labels[k]} for k in sorted(labels)],
        **({"app": app} if config.has_app else {}),
        "annotations": [{"name": k, "value": v} for k, v in annotations if v],
    }
    return Result(manifest, tuple(warnings))


def _provenance(naming: Naming) -> list[tuple[str, str | None]]:
    """The ``appc.io/docker/*`` annotations that say where the image came from, in order."""
    return [
        (ANN + "originalname", naming.original_name),
        (ANN + "registryurl", naming.registry_url),
        (ANN + "repository", naming.repository),
        (ANN + "imageid", naming.image_id),
        (ANN + "parentimageid", naming.parent_image_id),
        (ANN + "manifesthash", naming.manifest_hash),
        (ANN + "manifestlisthash", naming.manifest_list_hash),
    ]


def lower_layer_manifest(naming: Naming, os_arch: tuple[str, str]) -> dict[str, Any]:
    """The manifest of a layer below the top of an unsquashed (``--nosquash``) image: no
    app, the image's ``os`` and ``arch`` labels (not the host's, as the reference tool
    wrote), and of the provenance annotations those of the layer itself: ``registryurl``,
    ``repository``, and ``imageid`` and ``parentimageid`` naming this layer and the one
    below (see ``pipeline``). Not the image's ``originalname``, ``manifesthash`` or
    ``manifestlisthash`` (the reference's lower layers carry no annotations): the ACI of a
    layer is then the same bytes in every image of the repository built over it, one image
    per name and labels. Dependencies and ``pathWhitelist`` are added by
    :func:`with_layering`.

    Raises:
        BadConfig: ``naming.name`` has no valid AC name character.
    """
    labels = {"os": os_arch[0], "arch": os_arch[1]}
    return {
        "acKind": AC_KIND,
        "acVersion": AC_VERSION,
        "name": sanitize_ac_identifier(naming.name),
        "labels": [{"name": k, "value": labels[k]} for k in sorted(labels)],
        "annotations": [{"name": k, "value": v} for k, v in _provenance(naming) if v and k not in _IMAGE_ONLY],
    }


#: Provenance annotations that name the image converted, not a layer of it.
_IMAGE_ONLY = frozenset({ANN + "originalname", ANN + "manifesthash", ANN + "manifestlisthash"})


def with_layering(manifest: Mapping[str, Any], parent: Mapping[str, Any] | None,
                  path_whitelist: list[str] | None) -> dict[str, Any]:
    """``manifest`` with the fields that chain per-layer ACIs (appc spec/aci.md "Image
    Manifest Schema": ``dependencies``, ``pathWhitelist``), after the others.

    Args:
        manifest: a manifest from :func:`build_manifest` or :func:`lower_layer_manifest`.
        parent: the layer below as its manifest says it (``name``, ``labels``) plus its
            ``imageID``; ``None`` for the base layer.
        path_whitelist: every absolute path the rendered image keeps, sorted, when the
            layer removes something from those below; ``None`` when it only adds.
    """
    out = dict(manifest)
    if parent is not None:
        out["dependencies"] = [{"imageName": parent["name"], "imageID": parent["imageID"],
                                "labels": list(parent["labels"])}]
    if path_whitelist is not None:
        out["pathWhitelist"] = path_whitelist
    return out


def is_rfc3339(text: str) -> bool:
    """Whether ``text`` is an RFC 3339 date-time (section 5.6) that Go's ``time.Parse`` (and
    so appc's ``types.Date``) also accepts: the right shape (upper-case ``T`` and ``Z``,
    ASCII digits, as Go requires), a real calendar date and time, and a numeric offset of
    hours 00-23 and minutes 00-59 (RFC 3339's rule; Go takes any two digits there, so a
    few values rkt would read are dropped, as decisions.md drops what is not RFC 3339)."""
    m = _RFC3339.fullmatch(text)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    off_h, off_m = m.group(7), m.group(8)
    return off_h is None or (int(off_h) < 24 and int(off_m) < 60)


def go_json(value: Any) -> str:
    """Compact JSON exactly as Go's ``encoding/json`` writes it (UTF-8, ``<>&`` and
    U+2028/U+2029 escaped), so manifests match the reference tool byte for byte."""
    text = _SURROGATE.sub("\ufffd", json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The ``manifest`` file content (compact JSON, no final newline)."""
    return go_json(manifest).encode("utf-8")
