"""Errors of the pure converters. The pipeline wraps them into ``docker2aci.errors``."""

from __future__ import annotations


class ConversionError(Exception):
    """Root of the converters' errors."""


class UnsafeEntry(ConversionError):
    """A layer entry is unsafe or inconsistent (escapes the root, dangling hard link...).

    Attributes:
        layer: the layer's name (digest or position).
        entry: the entry name as stored in the layer.
    """

    def __init__(self, layer: str, entry: str, message: str) -> None:
        super().__init__(f"layer {layer}, entry {entry!r}: {message}")
        self.layer = layer
        self.entry = entry
        self.message = message


class BadLayer(ConversionError):
    """A layer is not a readable tar.

    Attributes:
        layer: the layer's name (digest or position).
    """

    def __init__(self, layer: str, message: str) -> None:
        super().__init__(f"layer {layer}: {message}")
        self.layer = layer
        self.message = message


class BadConfig(ConversionError):
    """An image config field cannot be translated into the appc manifest.

    Attributes:
        field: the config field at fault (``config.ExposedPorts`` ...).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"image config field {field}: {message}")
        self.field = field
        self.message = message
