"""Path predicates for tar entries, used by the squash and tested on their own.

Names are Linux paths: ``/`` is the only separator (a backslash is an ordinary
character on Linux). Spec: image-spec layer.md "File Types" and the appc ACI layout.
"""

from __future__ import annotations

Path = tuple[str, ...]
"""A cleaned, relative path as its components; ``()`` is the root."""


class EscapingPath(ValueError):
    """The name or link target leaves the root."""


def clean_member_name(name: str) -> Path:
    """Clean a tar member name into components relative to the root.

    ``./a//b/`` → ``("a", "b")``; ``.``, ``./`` and ``/`` → ``()`` (the root itself).

    Raises:
        EscapingPath: the name is absolute (other than ``/`` alone) or has a ``..``
            component.
    """
    if name.startswith("/") and name.strip("/"):
        raise EscapingPath("absolute entry name")
    parts = name.split("/")
    if "" in parts or "." in parts:
        parts = [p for p in parts if p not in ("", ".")]
    if ".." in parts:
        raise EscapingPath("entry name has a '..' component")
    return tuple(parts)


def is_escaping_link(name: Path, target: str) -> bool:
    """Whether a symlink at ``name`` with a relative ``target`` points above the root.

    Absolute targets never escape: they are resolved against the rootfs at run time
    (public case 13), so they are kept verbatim.
    """
    if target.startswith("/"):
        return False
    depth = len(name) - 1
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        else:
            depth += 1
    return False


def join(path: Path) -> str:
    """Components back to a relative name (``()`` → ``""``)."""
    return "/".join(path)
