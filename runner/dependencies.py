"""Finding the ACIs an image depends on (appc ``spec/types.md``, ``dependencies``).

A dependency names an image by ``imageName`` and, optionally, ``imageID`` and
``labels``. :class:`DirectoryResolver` looks for it among the ``*.aci`` files of a list
of directories (the ACI's own directory last, as rkt's ``--local`` fetch and
``actool``'s ``--dir`` would): a candidate matches when its manifest has that name,
every label asked for with the same value, and, when an ``imageID`` is given, that
image ID (a file that cannot be read whole is no candidate). Several matches without an
``imageID`` are ambiguous and refused, unless they are copies of one image (one image ID).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from docker2aci.errors import RunnerError
from runner.extract import compute_image_id, read_manifest

logger = logging.getLogger(__name__)


class DirectoryResolver:
    """Finds dependencies among the ACIs of some directories.

    Args:
        directories: searched in order; missing ones are skipped.
        hint: ends the error for a dependency found nowhere (how the caller's user gives
            more directories: ``; give ... with --dir DIR``), or ``""``.
    """

    def __init__(self, directories: Sequence[str], hint: str = "") -> None:
        self.directories = list(dict.fromkeys(os.path.abspath(d) for d in directories))
        self.hint = hint
        self._manifests: dict[str, dict[str, Any] | None] = {}
        self._ids: dict[str, str | None] = {}
        self._errors: dict[str, str] = {}  # why a candidate's image ID is None

    def __call__(self, dependency: Mapping[str, Any]) -> str:
        """The ACI file of ``dependency``.

        Raises:
            RunnerError: none matches, or several images do and no ``imageID`` picks one.
        """
        name = dependency.get("imageName")
        wanted_id = dependency.get("imageID")
        labels = label_map(dependency.get("labels"))
        matches = [path for path in self._candidates() if self._matches(path, dependency)]
        unreadable: list[str] = []
        if isinstance(wanted_id, str):
            unreadable = [path for path in matches if self._image_id(path) is None]
            matches = [path for path in matches if self._image_id(path) == wanted_id]
        where = ", ".join(self.directories) or "nowhere"
        described = f"{name}" + "".join(f",{k}={v}" for k, v in sorted(labels.items()))
        if isinstance(wanted_id, str):
            described += f" ({wanted_id})"
        if not matches:
            also = "".join(f"; {self._errors[path]}" for path in unreadable)
            raise RunnerError(f"dependency {described} not found among the ACIs in {where}{also}{self.hint}")
        if len(matches) > 1 and not isinstance(wanted_id, str) and not self._one_image(matches):
            raise RunnerError(f"dependency {described} is ambiguous: {', '.join(matches)}")
        return matches[0]

    def _one_image(self, paths: Sequence[str]) -> bool:
        """Whether ``paths`` all hold one image (copies of it: one image ID), so that no
        choice among them is made; an unreadable one is another image."""
        ids = {self._image_id(path) for path in paths}
        return len(ids) == 1 and None not in ids

    def _candidates(self) -> list[str]:
        found = []
        for directory in self.directories:
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            found.extend(os.path.join(directory, n) for n in names if n.endswith(".aci"))
        return found

    def _matches(self, path: str, dependency: Mapping[str, Any]) -> bool:
        if path not in self._manifests:
            try:
                self._manifests[path] = read_manifest(path)
            except RunnerError as err:
                logger.debug("not a dependency candidate: %s", err)
                self._manifests[path] = None
        manifest = self._manifests[path]
        return manifest is not None and satisfies(manifest, dependency)

    def _image_id(self, path: str) -> str | None:
        """The candidate's image ID; ``None`` for a file that cannot be read whole (a
        copy still being written beside the chain is no reason to refuse the others)."""
        if path not in self._ids:
            try:
                self._ids[path] = compute_image_id(path)
            except RunnerError as err:
                logger.debug("not a dependency candidate: %s", err)
                self._ids[path] = None
                self._errors[path] = str(err)
        return self._ids[path]


def satisfies(manifest: Mapping[str, Any], dependency: Mapping[str, Any]) -> bool:
    """Whether an image manifest is the image a dependency names: its ``name`` is the
    ``imageName`` and it has every label the dependency asks for, with the same value
    (appc ``spec/types.md``, ``dependencies``; the ``imageID`` is the caller's check)."""
    if manifest.get("name") != dependency.get("imageName"):
        return False
    have = label_map(manifest.get("labels"))
    return all(have.get(key) == value for key, value in label_map(dependency.get("labels")).items())


def label_map(value: object) -> dict[str, str]:
    """``[{"name": n, "value": v}, ...]`` as a mapping (malformed items ignored)."""
    if not isinstance(value, list):
        return {}
    return {item["name"]: item["value"] for item in value
            if isinstance(item, Mapping) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str)}
