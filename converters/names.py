"""appc names: ACIdentifier and ACName sanitising, and the Docker → appc os/arch table.

Spec: appc spec/types.md ("AC Identifier Type", "AC Name Type") and
schema/types/labels.go (``ValidOSArch``).
"""

from __future__ import annotations

import re

from .errors import BadConfig

_NOT_IDENTIFIER = re.compile(r"[^a-z0-9\-._~/]")
_IDENTIFIER_EDGE = "-._~/"
_NOT_NAME_RUN = re.compile(r"[^a-z0-9]+")


_AC_IDENTIFIER = re.compile(r"[a-z0-9]+(?:[-._~/][a-z0-9]+)*")


def is_ac_identifier(text: str) -> bool:
    """Whether ``text`` is an AC Identifier (appc spec/types.md: runs of ``[a-z0-9]``
    joined by one of ``-._~/``)."""
    return _AC_IDENTIFIER.fullmatch(text) is not None


def sanitize_ac_identifier(text: str) -> str:
    """Make an AC Identifier: lower-case, characters outside ``[a-z0-9-._~/]`` → ``_``,
    runs of ``-._~/`` stripped at both ends (appc ``SanitizeACIdentifier``).

    Raises:
        BadConfig: nothing valid is left.
    """
    out = _NOT_IDENTIFIER.sub("_", text.lower()).strip(_IDENTIFIER_EDGE)
    if not out:
        raise BadConfig("name", f"{text!r} has no valid AC Identifier character")
    return out


def sanitize_ac_name(text: str) -> str:
    """Make an AC Name: lower-case, each run of characters outside ``[a-z0-9]`` → one
    ``-``, ``-`` stripped at both ends (``53/udp`` → ``53-udp``).

    Raises:
        BadConfig: nothing valid is left.
    """
    out = _NOT_NAME_RUN.sub("-", text.lower()).strip("-")
    if not out:
        raise BadConfig("name", f"{text!r} has no valid AC Name character")
    return out


_APPC_ARCH: dict[tuple[str, str, str], str] = {
    ("linux", "amd64", ""): "amd64",
    ("linux", "386", ""): "i386",
    ("linux", "arm64", ""): "aarch64",
    ("linux", "arm", "v6"): "armv6l",
    ("linux", "arm", "v7"): "armv7l",
    ("linux", "arm", ""): "armv7l",
    ("linux", "ppc64", ""): "ppc64",
    ("linux", "ppc64le", ""): "ppc64le",
    ("linux", "s390x", ""): "s390x",
    ("freebsd", "amd64", ""): "amd64",
    ("freebsd", "386", ""): "i386",
    ("freebsd", "arm", ""): "arm",  # appc's table: freebsd arm/5, arm/6, arm/7 → arm
    ("freebsd", "arm", "v5"): "arm",
    ("freebsd", "arm", "v6"): "arm",
    ("freebsd", "arm", "v7"): "arm",  # bare arm, as Platform.normalised gives it
    ("darwin", "amd64", ""): "x86_64",
    ("darwin", "386", ""): "i386",
}
_IGNORED_VARIANTS = {"arm64": {"v8", "8"}, "amd64": {"v1", "v2", "v3", "v4"}}


def appc_os_arch(os_name: str, arch: str, variant: str = "") -> tuple[str, str]:
    """Translate a Docker/OCI platform into appc's ``os`` and ``arch`` label values.

    ``amd64`` → ``amd64``, ``386`` → ``i386``, ``arm64`` (any variant) → ``aarch64``,
    ``arm`` + ``v6`` → ``armv6l``, ``arm`` + ``v7`` or none → ``armv7l``; ``ppc64le``,
    ``s390x`` unchanged.

    Raises:
        BadConfig: the pair is outside appc's table (e.g. ``linux/riscv64``).
    """
    os_name, arch, variant = os_name.lower(), arch.lower(), (variant or "").lower()
    if variant in _IGNORED_VARIANTS.get(arch, set()) or arch in ("arm64",):
        variant = ""
    if variant.isdigit():
        variant = f"v{variant}"
    found = _APPC_ARCH.get((os_name, arch, variant))
    if found is None:
        shown = "/".join(p for p in (os_name, arch, variant) if p)
        known_os = any(key[0] == os_name for key in _APPC_ARCH)  # the os is at fault (windows), or the arch
        raise BadConfig("architecture" if known_os else "os", f"platform {shown} has no appc os/arch equivalent")
    return os_name, found


_NAMED_VARIANT = re.compile(r"v[0-9]{1,3}(?:\.[0-9]{1,3})?", re.ASCII)
"""A variant a file name may carry (``v3``, ``v8.2``): nothing else of an index's text."""


def file_platform_suffix(os_name: str, arch: str, variant: str = "") -> str:
    """``-<os>-<arch>[-<variant>]`` in appc names, for file names of non-host platforms
    (decisions.md, "File name"). The variant is added where appc's arch does not carry it
    (``armv6l`` and ``armv7l`` do) and it is not the architecture's baseline (``amd64``
    v1, ``arm64`` v8, which :meth:`docker2aci.manifest.Platform.normalised` drops): an
    index with ``linux/amd64`` and ``linux/amd64/v3`` gives ``-linux-amd64`` and
    ``-linux-amd64-v3``.

    Raises:
        BadConfig: the platform is outside appc's table (:func:`appc_os_arch`).
    """
    appc_os, appc_arch = appc_os_arch(os_name, arch, variant)
    variant = (variant or "").lower()
    named = arch.lower() in _IGNORED_VARIANTS and bool(_NAMED_VARIANT.fullmatch(variant)) \
        and variant not in ("v1", "v8")
    if appc_arch == "arm" and variant.lstrip("v") not in ("", "7"):  # freebsd arm/v5, v6: not the default v7
        named = True
        variant = f"v{variant.lstrip('v')}"
    return f"-{appc_os}-{appc_arch}" + (f"-{variant}" if named else "")
