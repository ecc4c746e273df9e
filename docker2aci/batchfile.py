"""The ``docker2aci batch`` input: what to convert, and how, item by item.

Three forms, told apart by their first non-blank character and the file's extension:

* **lines**: one source per line; blank lines and lines starting with ``#`` are skipped;
* **JSON** (a ``.json`` file, or text starting with ``[``): a list;
* **YAML** (a ``.yaml``/``.yml`` file, or text whose first item line starts with ``-``): a list.

A list item is a source string, or an object with ``source`` and any of the per-item
options of :data:`ITEM_OPTIONS`, which override the command line's for that item::

    - docker://registry.example.com/app:1.0
    - source: docker://registry.example.com/base:2
      platform: linux/arm64
      output: base-{os}-{arch}.aci
      sign: keys/release.sec.asc

Every item is checked before any conversion starts: an unknown option or a value of
the wrong type is an error naming the item and the option.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from . import untrustedjson
from .errors import UsageError

_T = TypeVar("_T")
_R = TypeVar("_R")

MAX_BATCH_FILE_BYTES = 64 * 1024 * 1024
"""The largest batch file read (bytes): it is read whole."""

ITEM_OPTIONS: dict[str, tuple[str, type]] = {
    # item key: (ConvertOptions field, type)
    "platform": ("platform", str),
    "image": ("image", str),
    "output": ("output_name", str),
    "output_dir": ("output_dir", str),
    "name": ("ac_name", str),
    "sign": ("sign_key", str),
    "sign_passphrase_file": ("sign_passphrase_file", str),
    "gpg_key": ("gpg_key", str),
    "compression": ("compression", str),
    "compression_level": ("compression_level", int),
}
"""Per-item options: the item key, the :class:`~docker2aci.pipeline.ConvertOptions` field it
sets, and the type its value must have."""


@dataclass(frozen=True)
class BatchItem:
    """One item of a batch file.

    Attributes:
        source: the image source (``docker://...``, ``docker-archive:PATH``, a path...).
        options: ConvertOptions field name → value, overriding the command line's, in
            field name order: the same options written in another order are equal (an
            item given twice is one ``batch`` skips, however its keys are ordered).
        where: names the item in messages (``FILE:LINE`` or ``FILE: item N``).
    """

    source: str
    options: tuple[tuple[str, Any], ...]
    where: str


def read_batch(path: str, check: Callable[[BatchItem], object] | None = None) -> list[BatchItem]:
    """Read a batch file (``-``: standard input).

    Args:
        path: the file.
        check: called with each item of a JSON or YAML file that parses; a
            :class:`UsageError` it raises is reported with the items' own, all at once
            (the caller's checks of the options' values, such as an ``output_dir`` that
            leads out of ``--output-dir``, came only once every item parsed).

    Raises:
        UsageError: the file cannot be read, is too large, does not parse, or an item
            is malformed (the message names the file, the item and the option).
    """
    import sys

    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_BATCH_FILE_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_BATCH_FILE_BYTES + 1)
    except OSError as err:
        raise UsageError(f"reading the batch file {name}: {err.strerror or err}") from err
    if len(data) > MAX_BATCH_FILE_BYTES:
        raise UsageError(f"{name}: larger than {MAX_BATCH_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")  # a leading BOM (Windows editors) is no part of the first item
    except UnicodeDecodeError as err:
        raise UsageError(f"{name}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    return parse_batch(text, name, check)


def parse_batch(text: str, name: str, check: Callable[[BatchItem], object] | None = None) -> list[BatchItem]:
    """Parse batch file text (see the module docstring for the forms).

    Args:
        text: the file's content.
        name: the file's name: names it in messages, and its extension picks JSON or YAML.
        check: as :func:`read_batch`'s.

    Raises:
        UsageError: see :func:`read_batch`.
    """
    first = next((line.strip() for line in text.splitlines()
                  if line.strip() and not line.lstrip().startswith("#")), "")
    lower = name.lower()
    if lower.endswith(".json") or first.startswith("["):
        try:
            doc = untrustedjson.loads(text)
        except ValueError as err:
            raise UsageError(f"{name}: not valid JSON: {err}") from err
        return _items(doc, name, check)
    if lower.endswith((".yaml", ".yml")) or first.startswith("-"):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise UsageError(f"{name}: not valid YAML: {err}") from err
        return _items(doc, name, check)
    return [BatchItem(line.strip(), (), f"{name}:{number}")
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def _items(doc: object, name: str, check: Callable[[BatchItem], object] | None) -> list[BatchItem]:
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise UsageError(f"{name}: expected a list of items, found {type(doc).__name__}")

    def checked(number: int, entry: object) -> BatchItem:
        item = _item(entry, f"{name}: item {number}")
        if check is not None:
            check(item)
        return item

    return every_item(checked, doc)


def every_item(check: Callable[[int, _T], _R], items: Sequence[_T]) -> list[_R]:
    """``check(number, item)`` of every item (numbered from 1), in order.

    Raises:
        UsageError: one or more checks raised it; the message is theirs, one a line, so
            that a file with several mistakes is told all of them at once.
    """
    checked: list[_R] = []
    errors: list[str] = []
    for number, item in enumerate(items, 1):
        try:
            checked.append(check(number, item))
        except UsageError as err:
            errors.append(str(err))
    if errors:
        raise UsageError("\n".join(errors))
    return checked


def _item(entry: object, where: str) -> BatchItem:
    if isinstance(entry, str):
        entry = {"source": entry}
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected a source string or an object, found {type(entry).__name__}")
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise UsageError(f"{where}: 'source' is missing or not a non-empty string")
    options: list[tuple[str, Any]] = []
    for key, value in entry.items():
        if key == "source":
            continue
        if key not in ITEM_OPTIONS:
            raise UsageError(f"{where}: unknown option {key!r} (known: source, {', '.join(ITEM_OPTIONS)})")
        field_name, kind = ITEM_OPTIONS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            wanted = {int: "an integer", str: "a string"}.get(kind, f"a {kind.__name__}")
            raise UsageError(f"{where}: option {key!r} must be {wanted}, not {value!r}")
        options.append((field_name, value))
    return BatchItem(source.strip(), tuple(sorted(options)), where)
