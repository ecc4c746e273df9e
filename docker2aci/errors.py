"""One exception root for the project, with typed subclasses that carry data.

Only :mod:`docker2aci.cli` turns these into exit statuses and messages. Every class has a
kebab-case ``reference`` that documentation and tests can name. Messages read
"doing X: cause"; causes are chained with ``raise ... from err``.
"""

from __future__ import annotations

import errno

from .terminal import printable


class Docker2ACIError(Exception):
    """Root of every error this project raises on purpose.

    Attributes:
        reference: a stable kebab-case name for the kind of error.
    """

    reference = "docker2aci-error"


class UsageError(Docker2ACIError):
    """The command line or API call is malformed (exit status 2).

    Attributes:
        unknown_option: the option the command does not have (``--output-dir``), when that
            is what is wrong, else ``None``.
    """

    reference = "usage-error"

    def __init__(self, message: str, *, unknown_option: str | None = None) -> None:
        super().__init__(message)
        self.unknown_option = unknown_option


class InvalidReference(Docker2ACIError):
    """An image reference (``NAME[:TAG][@DIGEST]``) or a transport name does not parse."""

    reference = "invalid-reference"


class SourceError(Docker2ACIError):
    """A source (archive, layout, registry) cannot be read or is malformed.

    Attributes:
        source: the input as the user named it (a path or reference), never a credential.
    """

    reference = "source-error"

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


class ImageNotFound(SourceError):
    """The selected image, tag or blob is not in the source."""

    reference = "image-not-found"


class SeveralImages(SourceError):
    """The source holds several images and none was selected.

    Attributes:
        names: the selectable names, in the source's order.
    """

    reference = "several-images"

    def __init__(self, source: str, names: list[str]) -> None:
        listing = "\n".join(printable(name) for name in names)  # one line each, whatever a name holds
        # shown unindented (cli): the source (a path may hold a newline) is one line too
        super().__init__(
            printable(source), f"several images found, use option --image with one of:\n\n{listing}"
        )
        self.source = source
        self.names = list(names)


class PlatformNotFound(SourceError):
    """No entry of a manifest list or image index matches the requested platform."""

    reference = "platform-not-found"


class InvalidManifest(SourceError):
    """A manifest, index, image config or archive index file is malformed.

    The message names the field at fault.
    """

    reference = "invalid-manifest"


class UnsupportedMediaType(SourceError):
    """A manifest or blob has a media type or encoding this tool cannot read."""

    reference = "unsupported-media-type"


class RegistryError(SourceError):
    """A registry answered with an error, or could not be reached.

    Attributes:
        status: the HTTP status, or ``None`` for a connection failure.
        url: the request URL, with any credentials removed.
        diagnostics: the registry's ``errors[]`` codes and messages, as ``CODE: message``.
        temporary: whether retrying later may succeed (5xx, 429, cut connections).

    The message reads ``MESSAGE (DIAGNOSTICS)HINT``: ``hint`` (``"; what to do"``) comes
    after the registry's own words, so they do not read as the hint's.
    """

    reference = "registry-error"

    def __init__(self, source: str, message: str, *, status: int | None = None, url: str = "",
                 diagnostics: tuple[str, ...] = (), temporary: bool = False, hint: str = "") -> None:
        detail = f"{message}" + (f" ({'; '.join(diagnostics)})" if diagnostics else "") + hint
        super().__init__(source, detail)
        self.status = status
        self.url = url
        self.diagnostics = diagnostics
        self.temporary = temporary


class AuthError(RegistryError):
    """The registry refused our credentials, or wants credentials we do not have."""

    reference = "auth-error"


class DigestMismatch(Docker2ACIError):
    """Bytes did not hash to the digest that named them.

    Attributes:
        what: what was being verified (a blob, a layer's diff ID, a manifest).
        expected: the digest that was asked for.
        actual: the digest of the bytes received.
    """

    reference = "digest-mismatch"

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


class SizeMismatch(Docker2ACIError):
    """A blob was longer or shorter than its descriptor's ``size`` (bytes)."""

    reference = "size-mismatch"

    def __init__(self, what: str, expected: int, actual: int) -> None:
        super().__init__(f"{what}: size mismatch: expected {expected} bytes, got {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


class LimitExceeded(Docker2ACIError):
    """Input is larger than its named limit: a metadata document (manifest, config, index;
    :mod:`docker2aci.limits`) or a layer's uncompressed bytes (``--max-layer-size``)."""

    reference = "limit-exceeded"


class InvalidLayer(Docker2ACIError):
    """A layer tar is unreadable, or one of its entries is unsafe or inconsistent.

    Attributes:
        layer: which layer the entry came from, as messages name it
            (:attr:`docker2aci.layerblob.LayerBlob.label`: the image, the layer's position
            and its digest or member name).
        entry: the entry name as stored in the layer, or ``None`` for the whole layer.
    """

    reference = "invalid-layer"

    def __init__(self, layer: str, entry: str | None, message: str) -> None:
        where = layer + (f", entry {entry!r}" if entry is not None else "")
        super().__init__(f"{where}: {message}")
        self.layer = layer
        self.entry = entry


class InvalidConfig(Docker2ACIError):
    """The image config cannot be translated into an appc image manifest (names the field)."""

    reference = "invalid-config"


class OutputError(Docker2ACIError):
    """The ACI cannot be written (file name clash, I/O error)."""

    reference = "output-error"


class InvalidACI(Docker2ACIError):
    """An ACI file cannot be read as one (appc ``spec/aci.md``): unreadable, compressed
    with what ACIs do not use (zstd), damaged, not a tar, or without a valid manifest.

    Attributes:
        entry: the tar entry at fault as stored in the archive, or ``None`` when it is the
            whole file.
        reason: what is wrong (the message without the entry's name).
    """

    reference = "invalid-aci"

    def __init__(self, reason: str, entry: str | None = None) -> None:
        super().__init__(reason if entry is None else f"entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason


class RunnerError(Docker2ACIError):
    """An ACI cannot be rendered or its app cannot be started."""

    reference = "runner-error"


class VolumeOptionError(UsageError, RunnerError):
    """A ``--volume`` does not fit the image: it names no mount point of it, or its name is
    given twice. Only the image's manifest tells, so it is found once the image is
    rendered; ``run`` still exits 2, as for any usage error (a :class:`RunnerError` too,
    for the runner's own callers)."""

    reference = "volume-option-error"


class ExecError(RunnerError):
    """The app's program could not be executed. ``run`` exits with :attr:`status`, the
    shell's convention that scripts test (``docker run`` gives it too when runc finds no
    program, or one it may not execute): 127 when the program was not found (``ENOENT``:
    no such file, not in ``PATH``, a dangling link, a missing interpreter), 126 when it
    was found but cannot be executed (any other ``errno``: permission denied, a
    directory, exec format error).

    Attributes:
        program: the program as the app's command line names it (``argv[0]``).
        reason: why, e.g. ``No such file or directory``.
        status: 127 or 126.
        image: the image it was run from, when known (:meth:`in_image`).
    """

    reference = "exec-error"

    #: :attr:`status` of a program not found.
    NOT_FOUND = 127
    #: :attr:`status` of a program found but not executable.
    NOT_EXECUTABLE = 126

    def __init__(self, program: str, reason: str, errno_: int, image: str | None = None) -> None:
        super().__init__(f"{image + ': ' if image else ''}cannot execute {program}: {reason}")
        self.program = program
        self.reason = reason
        self.errno = errno_
        self.status = self.NOT_FOUND if errno_ == errno.ENOENT else self.NOT_EXECUTABLE
        self.image = image

    def in_image(self, image: str) -> ExecError:
        """The same error, naming the image it was run from (``test-busybox-latest.aci``)."""
        return ExecError(self.program, self.reason, self.errno, image)


class SigningError(Docker2ACIError):
    """A key cannot be read, generated or used, a signature cannot be made, or the trust
    store cannot be read or changed. The message names the file or key at fault and
    never contains a passphrase or secret key material."""

    reference = "signing-error"


class TrustStoreError(SigningError):
    """The trust store holds a file it must not: a key file whose name is not the
    fingerprint of the key inside (rkt's "fingerprint mismatch"), or an unreadable key.

    Attributes:
        path: the offending file.
    """

    reference = "trust-store-error"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"trust store: {path}: {message}")
        self.path = path


class VerificationError(SigningError):
    """An ACI's signature was refused.

    Attributes:
        image: the image's AC name (read from its manifest), or the file when there is
            none; the message names the file as well.
        key_id: the signing key ID (16 upper-case hex digits) the signature names, or
            ``None`` when there is no readable signature.
        prefix: the name looked up in the trust store (the image's name; its parents
            and the root keys are looked up too), or ``None`` when no lookup was made.
        reason: why, one of :data:`VERIFICATION_REASONS`.
        detail: the refusal's own words, without the image, key ID and prefix.
    """

    reference = "verification-error"

    def __init__(self, image: str, key_id: str | None, prefix: str | None, reason: str,
                 detail: str) -> None:
        looked_up = f'prefix looked up: "{prefix}"' if prefix is not None else "no prefix looked up"
        signer = f"signing key ID {key_id}" if key_id else "no signing key ID"
        super().__init__(f"image {image}: {detail}; {signer}; {looked_up}")
        self.image = image
        self.key_id = key_id
        self.prefix = prefix
        self.reason = reason
        self.detail = detail


VERIFICATION_REASONS = ("unsigned", "bad-signature", "untrusted-key", "prefix-mismatch",
                        "expired-key", "revoked-key")
"""Values of :attr:`VerificationError.reason`, each with its own message."""
