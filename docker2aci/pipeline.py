"""convert(): open the source → select the image and platform → read and verify the layers
→ squash → translate the config → write the ACI → sign it (when asked).

Data flows one way; each stage is a module of its own (``sources``, ``layers``,
``converters.rootfs``, ``converters.manifest``, ``aci``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from converters.errors import BadConfig
from converters.manifest import ImageConfig, Naming
from converters.names import appc_os_arch, file_platform_suffix, is_ac_identifier

from . import __version__, untrustedjson
from .atomic import locked_work_dir, make_output_dir, remove_abandoned_in, remove_abandoned_work_dirs
from .compression import GZIP_LEVEL, Compression, check_level
from .digest import Digest
from .errors import (
    DigestMismatch,
    InvalidConfig,
    InvalidManifest,
    LimitExceeded,
    OutputError,
    UsageError,
)
from .filestamp import stamp
from .limits import DEFAULT_MAX_LAYER_BYTES, MAX_LAYERS
from .manifest import Platform
from .sources import PULL_POLICIES, DownloadHook, RemoteOptions, ResolvedImage, open_source
from .signaturefile import signature_path
from .store import ConversionCache, conversion_key, default_cache_dir, publish_copy

if TYPE_CHECKING:
    from .layerblob import LayerBlob
    from .signing import Signer

log = logging.getLogger(__name__)

ALL_PLATFORMS = "all"
"""``--platform all``: convert every platform of an index, each into its own file."""


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert. Defaults are filled here and nowhere else. Each field's type is
    checked when the options are made (:class:`~docker2aci.errors.UsageError` naming the
    field); paths may be ``os.PathLike``.

    Attributes:
        output_dir: where ACIs are written (created if missing).
        image: selects one image of a source holding several (``NAME[:TAG]``,
            a tag, or ``sha256:<hex>``); the reference tool's ``--image``.
        platform: ``os/arch[/variant]`` to choose from an index, or ``all`` for every
            platform of it (file names then always carry ``-<os>-<arch>``); default the
            host's.
        compression: gzip (default), none, xz or bzip2 (the appc set).
        compression_level: the gzip level: 0-3 ISA-L (fast; default 3), 4-9 zlib
            (smaller, several times slower); see :mod:`docker2aci.aci`. Other
            compressions have no level (a level other than the default is warned of).
        squash: one ACI for the whole image (default), or one per layer (``--nosquash``).
        tmp_dir: where layers are spooled; default the system's temporary directory.
        creds: ``USER:PASS`` for the registry; default: the Docker config files.
        cert_dir: CA (and client) certificates for the registry.
        insecure_skip_verify: do not verify the registry's TLS certificate.
        insecure_allow_http: fall back to plain http for the registry.
        cache_dir: the blob and conversion cache; default ``~/.cache/docker2aci``.
        use_cache: reuse an earlier conversion of the same registry manifest.
        sign_key: sign every ACI written with this secret key file (or the fingerprint
            or key ID of a key in ``docker2aci keys``' keyring); the ASCII-armored
            detached signature is saved as ``<path>.asc`` (see :mod:`docker2aci.signing`).
        sign_passphrase_file: the first line of this file unlocks ``sign_key`` (or is
            given to gpg for ``gpg_key``).
        gpg_key: sign with this key of the user's gpg keyring instead (``GNUPGHOME``
            honoured).
        cache_local: also cache conversions of local sources (archives, layouts, the
            engine) whose config pins their layers (``diff_ids``), keyed by the config
            digest and the image's name: the pre-run hook sets it, so racing runs of one
            archive convert it once.
        ac_name: the AC name written into the manifest instead of the one the source
            gives (an AC identifier: ``example.com/mirror/busybox``); batch items and the
            mirror set it.
        output_name: the ACI's file name instead of ``<repository>-<tag>.aci``; ``{os}``
            and ``{arch}`` in it are replaced by the image's appc os and arch (squashed
            conversions only).
        max_layer_size: the largest uncompressed size of one layer, in bytes, counted
            while it streams (default :data:`~docker2aci.limits.DEFAULT_MAX_LAYER_BYTES`,
            16 GiB); a larger layer (a decompression bomb) is refused with
            :class:`~docker2aci.errors.LimitExceeded` and nothing is written. A compressed
            archive (``docker save | gzip``), decompressed into ``tmp_dir`` before it is
            read, is held to the same cap. Not part of the conversion-cache key: a cached
            conversion is reused whatever the limit.
        claims_dir: a directory shared by the conversions of one run that are made
            separately (the items of a batch, in worker processes too): each file written
            is first claimed there for ``claims_as`` (a marker linked into place), and
            a file another conversion of the run claimed is refused instead of
            overwritten.
        claims_as: who claims files in ``claims_dir`` (``item 3``): the same conversion
            tried again (its worker died) keeps its claims.
        pull_policy: when a registry is asked what a tag names (``--pull-policy``, rkt's
            names): ``update`` (default) every time; ``new`` only for a tag never asked
            about before with this cache (else what it named then, if the cache still
            holds that manifest: a registry out of reach does not stop a run of an image
            converted before); ``never`` not at all: what the cache lacks is an error.
    """

    output_dir: str = "."
    image: str | None = None
    platform: str | None = None
    compression: Compression = Compression.GZIP
    compression_level: int = GZIP_LEVEL
    squash: bool = True
    tmp_dir: str | None = None
    creds: str | None = field(default=None, repr=False)
    cert_dir: str | None = None
    insecure_skip_verify: bool = False
    insecure_allow_http: bool = False
    cache_dir: str | None = None
    use_cache: bool = True
    sign_key: str | None = None
    sign_passphrase_file: str | None = None
    gpg_key: str | None = None
    cache_local: bool = False
    ac_name: str | None = None
    output_name: str | None = None
    max_layer_size: int = DEFAULT_MAX_LAYER_BYTES
    claims_dir: str | None = None
    claims_as: str = ""
    pull_policy: str = "update"

    def __post_init__(self) -> None:
        """Check each field's type, naming the field (a wrong one would otherwise fail
        deep inside the conversion, or not at all: ``compression="xz"`` wrote an
        uncompressed ACI); a path may be given as an ``os.PathLike`` and is kept as ``str``.

        Raises:
            UsageError: a field has the wrong type; a directory is an empty path or holds
                a NUL character; a signing field (``sign_key``, ``sign_passphrase_file``,
                ``gpg_key``) is empty (``None`` is "no signing": an empty one, from an unset
                variable, wrote unsigned ACIs); ``creds`` is empty (``None`` is the Docker
                config files' credentials); ``max_layer_size`` is below 1.
        """
        def refuse(name: str, expected: str) -> UsageError:
            value = getattr(self, name)  # a password is not shown, nor its type's repr
            got = f"a {type(value).__name__}" if name == "creds" else repr(value)
            return UsageError(f"ConvertOptions.{name}: expected {expected}, got {got}")

        for name in _PATH_FIELDS:
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
                object.__setattr__(self, name, value)
            if value is None and name != "output_dir":
                continue
            if not isinstance(value, str):
                raise refuse(name, "a path (str or os.PathLike)" + ("" if name == "output_dir" else " or None"))
            if name in _DIRECTORY_FIELDS and (not value or "\0" in value):
                raise refuse(name, "a directory's path, not empty and without NUL")
        for name in _TEXT_FIELDS:
            if not isinstance(getattr(self, name), str) and (name == "claims_as" or getattr(self, name) is not None):
                raise refuse(name, "a str" + ("" if name == "claims_as" else " or None"))
        for name, what in _SIGNING_FIELDS.items():  # their types are checked above
            if getattr(self, name) is not None and not getattr(self, name).strip():
                raise refuse(name, what)
        if self.creds == "":  # an unset variable: not the config files' credentials, nor none
            raise refuse("creds", "USER:PASSWORD, not empty, or None (the Docker config files' credentials)")
        for name in _FLAG_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise refuse(name, "a bool")
        if not isinstance(self.compression, Compression):
            raise refuse("compression", "a Compression (" + ", ".join(f"Compression.{c.name}" for c in Compression)
                         + "; Compression('xz') from a name)")
        for name in ("compression_level", "max_layer_size"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise refuse(name, "an int")
        if self.max_layer_size < 1:
            raise refuse("max_layer_size", "a size in bytes, at least 1")
        if self.pull_policy not in PULL_POLICIES:
            raise refuse("pull_policy", " or ".join(repr(p) for p in PULL_POLICIES))


_PATH_FIELDS = ("output_dir", "tmp_dir", "cert_dir", "cache_dir", "claims_dir", "sign_key", "sign_passphrase_file")
"""The :class:`ConvertOptions` fields that name files (``sign_key``: or a key)."""
_DIRECTORY_FIELDS = ("output_dir", "tmp_dir", "cert_dir", "cache_dir", "claims_dir")
"""Of :data:`_PATH_FIELDS`, the directories: an empty path is no default for them (it
comes from an unset variable), as on the command line."""
_SIGNING_FIELDS = {"sign_key": "a key file, fingerprint or key ID, not empty, or None (no signing)",
                   "sign_passphrase_file": "a file's path, not empty, or None (no passphrase)",
                   "gpg_key": "a gpg key ID or fingerprint, not empty, or None (no signing)"}
"""The :class:`ConvertOptions` fields that turn signing on: ``None`` leaves it off; an
empty string (an unset variable) is refused, not taken as ``None``."""
_TEXT_FIELDS = ("image", "platform", "creds", "gpg_key", "ac_name", "output_name", "claims_as")
_FLAG_FIELDS = ("squash", "insecure_skip_verify", "insecure_allow_http", "use_cache", "cache_local")


@dataclass(frozen=True)
class ConvertedACI:
    """One ACI written.

    Attributes:
        path: absolute path of the ``.aci`` file.
        image_id: ``sha512-`` + 128 hex of the uncompressed ACI.
        name: the AC name.
        labels: label name → value.
        manifest: the appc image manifest written into it.
        manifest_digest: what ``appc.io/docker/manifesthash`` says.
        warnings: what was dropped or changed during conversion.
        reused_from: the conversion cache's ACI this file is a link or copy of, when
            the conversion was reused (``None``: converted by this call).
    """

    path: str
    image_id: str
    name: str
    labels: dict[str, str]
    manifest: dict[str, Any] = field(repr=False)
    manifest_digest: str
    warnings: tuple[str, ...] = ()
    reused_from: str | None = field(default=None, repr=False, compare=False)


ProgressHook = DownloadHook
"""Called as ``hook(task, done, total)``: task ``layers`` counts layers read, a task named
by a blob digest counts its bytes downloaded (``total`` ``None`` when unknown)."""


def convert(source: str, options: ConvertOptions | None = None,
            progress: ProgressHook | None = None) -> list[ConvertedACI]:
    """Convert one image into a squashed ACI (or one ACI per layer, ``squash`` off).

    Safe to call from several threads of one process at once (each its own conversion,
    sharing a cache directory or not); it installs no signal handler.

    Args:
        source: ``docker://[HOST[:PORT]/]NAME[:TAG|@DIGEST]``, ``docker-daemon:NAME[:TAG]``,
            ``docker-archive:PATH[:NAME[:TAG]]``, ``oci:DIR[:TAG]``,
            ``oci-archive:PATH[:TAG]`` or a bare path (sniffed), as README "Use" lists them.
        options: see :class:`ConvertOptions`.
        progress: optional progress callback (:data:`ProgressHook`).

    Returns:
        the ACIs written: one, one per layer (top first) with ``squash`` off, or one per
        platform with ``--platform all``, all of them
        or, when one platform fails, none (the files they would replace are left as they
        were, as for a ``--nosquash`` chain). With a signing key each is signed, its
        signature at ``<path>.asc``, also when it was reused from the conversion cache.

    Raises:
        UsageError: contradictory options (also ``claims_dir`` without ``claims_as``), an
            empty source, a malformed ``platform`` or ``compression_level``.
        InvalidReference: a registry reference does not parse.
        SigningError: the signing key cannot be used (checked before any work), or a
            signature cannot be written.
        SourceError (and subclasses): the source cannot be read or holds no such image;
            :class:`~docker2aci.errors.RegistryError` (with ``status``, ``url``,
            ``temporary``) when a registry fails.
        LimitExceeded: a layer is larger than ``max_layer_size``, or the image has too
            many layers or too large a metadata document.
        DigestMismatch, SizeMismatch: content does not match its digests.
        InvalidLayer: a layer is unreadable or has unsafe entries.
        InvalidConfig: the config cannot be expressed as an appc manifest.
        OutputError: the ACI cannot be written, two images of this run would get the
            same file name, ``tmp_dir`` is not a directory, or ``cache_dir`` is not one.
    """
    options = options or ConvertOptions()
    try:
        check_level(options.compression_level)
    except ValueError as err:
        raise UsageError(f"--compression-level: {err}") from err
    if options.compression != Compression.GZIP and options.compression_level != GZIP_LEVEL:
        log.warning("--compression-level %d is a gzip level: %s output has none; ignored",
                    options.compression_level, options.compression.value)
    check_naming(options)
    if options.claims_dir is not None and not options.claims_as:  # else every conversion is the same claimant
        raise UsageError("claims_dir needs claims_as: who claims (every conversion would be the same claimant)")
    if options.tmp_dir is not None and not os.path.isdir(options.tmp_dir):
        # before any work, needed or not
        raise OutputError(f"--tmp-dir {options.tmp_dir}: "
                          + ("not a directory" if os.path.lexists(options.tmp_dir) else "no such directory"))
    if options.cache_dir is not None and os.path.lexists(options.cache_dir) and not os.path.isdir(options.cache_dir):
        # a conversion that needs no cache (a local archive) went on silently with a mistyped one
        raise OutputError(f"--cache-dir {options.cache_dir}: not a directory")
    every_platform = options.platform == ALL_PLATFORMS
    try:
        wanted = Platform.parse(options.platform) if options.platform and not every_platform else Platform.host()
    except InvalidManifest as err:
        raise UsageError(str(err)) from err
    signer = None
    if options.sign_key or options.gpg_key or options.sign_passphrase_file:
        from . import signing  # OpenPGP is imported only when signing

        signer = signing.open_signer(key=options.sign_key, passphrase_file=options.sign_passphrase_file,
                                     gpg_key=options.gpg_key)
    remote = RemoteOptions(creds=options.creds, cert_dir=options.cert_dir,
                           insecure_skip_verify=options.insecure_skip_verify,
                           allow_http=options.insecure_allow_http, cache_dir=options.cache_dir,
                           tmp_dir=options.tmp_dir, progress=progress, max_spool_size=options.max_layer_size,
                           pull_policy=options.pull_policy)
    src, embedded = open_source(source, remote)
    try:
        if options.image and embedded and options.image != embedded:
            raise UsageError(f"--image {options.image!r} contradicts {embedded!r} in {source!r}")
        selector = options.image or embedded
        targets: list[Platform | None] = [wanted]
        if every_platform:
            found: list[Platform | None] = list(src.platforms(selector) or [None])
            targets = list(_convertible(found, src.display))
        cache = None
        if (src.cacheable or options.cache_local) and options.use_cache:
            cache = ConversionCache(options.cache_dir or default_cache_dir())  # its directory checked once
        # Several platforms are written together or not at all, as a --nosquash chain is:
        # each into a staging directory, moved into place once the last is converted.
        with _staging(options.output_dir, len(targets) > 1) as stage:
            written = _Outputs(signing=signer is not None, claims=(options.claims_dir, options.claims_as),
                               stage=stage)
            results: list[ConvertedACI] = []
            target = None
            try:
                for target in targets:
                    resolved = src.resolve(selector, target or wanted)
                    what = f"{src.display} ({target})" if target else src.display
                    results.extend(_convert_image(what, resolved, target or wanted, options, progress, written,
                                                  cache, signer, local=not src.cacheable))
            except BaseException as err:
                if stage is not None and not isinstance(err, KeyboardInterrupt):
                    done = ", ".join(str(t) for t in targets[:targets.index(target)]) or "none"
                    log.warning("%s: platform %s failed, so none of the %d platforms is written (converted before "
                                "it: %s)", src.display, target, len(targets), done)
                written.drop_unsigned_signatures()
                written.release_unwritten(() if stage is not None else (r.path for r in results))
                raise
            if stage is not None:
                results = written.publish(results)
                if signer is None:
                    written.drop_stale_signatures(src.display, results)
        return results
    finally:
        src.close()


STAGE_PREFIX = ".docker2aci-platforms-"
"""The staging directories of ``--platform all`` in the output directory (with their lock
files, :func:`~docker2aci.atomic.locked_work_dir`): one a killed run left is removed by
the next conversion into that directory."""


@contextmanager
def _staging(output_dir: str, wanted: bool) -> Iterator[str | None]:
    """A new staging directory in ``output_dir`` (made if missing) while the block runs,
    removed with what is left in it when the block ends; ``None`` when not ``wanted``.

    Raises:
        OutputError: it cannot be made.
    """
    if not wanted:
        yield None
        return
    make_output_dir(output_dir)
    with contextlib.ExitStack() as stack:
        try:
            stage = stack.enter_context(locked_work_dir(output_dir, STAGE_PREFIX))
        except OSError as err:
            raise OutputError(f"creating a staging directory in {output_dir}: {err.strerror or err}") from err
        stack.callback(shutil.rmtree, stage, ignore_errors=True)  # before the lock goes
        yield stage


def check_naming(options: ConvertOptions) -> None:
    """Refuse an ``ac_name`` that is not an AC identifier and an ``output_name`` that is
    not one safe file name ending in ``.aci``.

    Raises:
        UsageError: either is malformed, or ``output_name`` is given with ``squash`` off,
            or for every platform (``all``) without ``{os}`` and ``{arch}``.
    """
    if options.ac_name is not None and not is_ac_identifier(options.ac_name):
        raise UsageError(f"AC name {options.ac_name!r} is not an AC identifier (appc types.md: lower-case "
                         f"a-z, 0-9 and -._~/, starting and ending with a letter or digit)")
    if options.output_name is None:
        return
    if not options.squash:
        raise UsageError("an output file name cannot be given with --nosquash (one ACI per layer)")
    name = options.output_name
    if options.platform == ALL_PLATFORMS and not ("{os}" in name and "{arch}" in name):
        # else known only once the second platform's file clashes with the first's
        raise UsageError(f"output file name {name!r} with platform all: every platform's ACI would get that "
                         "name; put {os} and {arch} in it")
    sample = name.replace("{os}", "linux").replace("{arch}", "amd64")
    if (not sample.endswith(".aci") or sample == ".aci" or "/" in sample or sample.startswith(".")
            or "{" in sample or "}" in sample or any(ord(c) < 0x20 or ord(c) == 0x7F for c in sample)):
        raise UsageError(f"output file name {name!r}: expected one file name ending in .aci, not starting "
                         f"with a dot, with no '/' and no placeholder but {{os}} and {{arch}}")


def _output_name(options: ConvertOptions, resolved: ResolvedImage, os_arch: tuple[str, str], suffix: str) -> str:
    """The ACI's file name: ``options.output_name`` with ``{os}``/``{arch}`` filled in, else
    :func:`aci_file_name`."""
    if options.output_name is not None:
        return options.output_name.replace("{os}", os_arch[0]).replace("{arch}", os_arch[1])
    return aci_file_name(resolved.name.repository, resolved.name.tag, suffix)


def _compression_key(options: ConvertOptions) -> str:
    """What the compression settings add to the conversion key (``gzip-1``, ``none``)."""
    if options.compression is Compression.GZIP:
        return f"gzip-{options.compression_level}"
    return options.compression.value


def _convertible(platforms: list[Platform | None], display: str) -> Iterator[Platform | None]:
    """The index platforms appc can name; others (riscv64 ...) are skipped with a warning
    (attestation entries never get here: :func:`~docker2aci.manifest.parse_index`)."""
    kept = 0
    for platform in platforms:
        if platform is not None:
            try:
                appc_os_arch(platform.os, platform.architecture, platform.variant)
            except BadConfig:
                log.warning("%s: skipping platform %s, which appc cannot name", display, platform)
                continue
        kept += 1
        yield platform
    if not kept:
        present = ", ".join(str(p) for p in platforms) or "none"
        raise InvalidManifest(display, f"no platform of the index can be converted: appc names none of "
                                       f"{present}")


def _parse_config(resolved: ResolvedImage, display: str) -> ImageConfig:
    try:
        doc = untrustedjson.loads(resolved.config, utf8_only=True)
    except untrustedjson.BadJSON as err:
        raise InvalidManifest(f"{display}: config {resolved.config_digest}", f"not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{display}: config {resolved.config_digest}", "not a JSON object")
    try:
        return ImageConfig.from_json(doc)
    except BadConfig as err:
        raise InvalidConfig(f"{display}: {err}") from err


def _platform_of(config: ImageConfig, resolved: ResolvedImage, requested: Platform,
                 explicit: bool) -> tuple[Platform, str | None]:
    """The image's platform: its config's (a variant it leaves out taken from the index
    entry of the same os and architecture), else its index entry's, else the requested
    one; and a warning (logged on every conversion, also one reused from the conversion
    cache): a config that names no platform; an image without an index that is not of
    the os/architecture ``--platform`` named (``explicit``), which is converted as it is
    (skopeo warns likewise); or an index entry whose platform is not its config's, which
    is converted as its config says, as Docker records and warns of it (moby
    ``daemon/images`` ``pullForBuilder``: "the resulting image's configured platform ...
    does not match"; containerd chooses by the entry and says nothing)."""
    entry = resolved.index_platform
    if config.os and config.architecture:
        found = Platform.normalised(config.os, config.architecture, config.variant)
        if not config.variant and entry is not None and (entry.os, entry.architecture) == (found.os,
                                                                                           found.architecture):
            found = entry  # arm with v6 in the index and no variant in the config: v6, not the default v7
    elif entry is not None:
        found = entry
    else:
        if explicit:
            return requested, None
        return requested, f"the image config names no os/architecture; assuming the host's ({requested})"
    if explicit and entry is None and (found.os, found.architecture) != (requested.os, requested.architecture):
        return found, f"the image is {found}, not the requested {requested}; converted as {found}"
    if entry is not None and found != entry:
        return found, (f"the index entry says platform {entry}, but the image config says {found}; converted as "
                       f"{found}, as the config says (the image's builder got one of them wrong)")
    return found, None


def _paired_layers(config: ImageConfig, resolved: ResolvedImage, display: str) -> list[LayerBlob]:
    """The image's layers, each placed in it (named by ``display`` and its index in
    messages, :attr:`LayerBlob.label`) and paired with its ``rootfs.diff_ids`` entry.

    Raises:
        InvalidManifest: no layers, or not as many as ``rootfs.diff_ids`` lists.
        LimitExceeded: more than :data:`~docker2aci.limits.MAX_LAYERS` layers.
    """
    if len(resolved.layers) > MAX_LAYERS:
        raise LimitExceeded(f"{display}: the image has {len(resolved.layers)} layers, more than the "
                            f"{MAX_LAYERS} an image may have")
    layers = [dataclasses.replace(blob, image=display, index=i) for i, blob in enumerate(resolved.layers)]
    if not layers:
        raise InvalidManifest(display, "the image has no layers: nothing to convert")
    if not config.diff_ids and not resolved.pinned_layers:
        return layers  # schema 1 and legacy archives: no diff IDs to check
    if len(config.diff_ids) != len(layers):
        raise InvalidManifest(display, f"config rootfs.diff_ids lists {len(config.diff_ids)} layers, "
                                       f"the manifest {len(layers)}")
    return [dataclasses.replace(blob, diff_id=Digest.parse(d, what=f"{display}: rootfs.diff_ids[{i}]"))
            for i, (blob, d) in enumerate(zip(layers, config.diff_ids))]


def aci_file_name(repository: str, tag: str | None, suffix: str = "") -> str:
    """``<repository with / → ->[-<tag>][suffix].aci``, checked to be one path component.

    Raises:
        OutputError: the name would not be a single safe file name.
    """
    name = repository.replace("/", "-") + (f"-{tag}" if tag else "") + suffix + ".aci"
    if "/" in name or name.startswith(".") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise OutputError(f"image name {repository!r} does not give a safe file name")
    return name


def _convert_image(display: str, resolved: ResolvedImage, wanted: Platform, options: ConvertOptions,
                   progress: ProgressHook | None, written: _Outputs,
                   cache: ConversionCache | None, signer: Signer | None, *, local: bool) -> list[ConvertedACI]:
    """Write one image's ACI (or reuse the cached one), or its per-layer ACIs, then sign
    every file as written (or, unsigned, remove the signatures of the files replaced).
    When a file cannot be signed (its signature cannot be written), every file of the
    image is removed, with the signatures made before: a signing run that fails leaves
    no unsigned ACI, nor part of a ``--nosquash`` chain (one stopped while it signs
    leaves the files unsigned, as one stopped before)."""
    if options.squash:
        converted = [_write_image(display, resolved, wanted, options, progress, written, cache, local=local)]
    else:
        converted = _write_unsquashed(display, resolved, wanted, options, progress, written)
    if signer is not None:
        from . import signing

        for number, aci in enumerate(converted):
            try:
                signing.sign_file(aci.path, signer)
            except Exception:
                _remove_unsigned(display, [a.path for a in converted], signed=number)
                raise
            written.signed(aci.path)
    else:
        written.drop_stale_signatures(display, converted)
    return converted


@dataclass(frozen=True)
class _Image:
    """What the conversion knows of an image before it reads its layers."""

    config: ImageConfig
    platform: Platform
    os_arch: tuple[str, str]
    blobs: list[LayerBlob]
    notes: tuple[str, ...]
    """Warnings about the platform (see :func:`_platform_of`), logged on every path: they
    are not in the conversion cache's record."""


def _prepare(display: str, resolved: ResolvedImage, wanted: Platform, options: ConvertOptions) -> _Image:
    """Read the config, settle the platform and pair the layers with their diff IDs;
    create the output directory."""
    config = _parse_config(resolved, display)
    explicit = options.platform not in (None, "", ALL_PLATFORMS)  # with "all", each image is its own
    image_platform, note = _platform_of(config, resolved, wanted, explicit)
    try:
        os_arch = appc_os_arch(image_platform.os, image_platform.architecture, image_platform.variant)
    except BadConfig as err:
        host = ", the host's" if not options.platform else ""
        asked = "" if image_platform == wanted else f" (the image is {image_platform}; asked for {wanted}{host})"
        raise InvalidConfig(f"{display}: {err}{asked}") from err
    blobs = _paired_layers(config, resolved, display)
    make_output_dir(options.output_dir)
    for path in remove_abandoned_in(options.output_dir) + remove_abandoned_work_dirs(options.output_dir,
                                                                                      STAGE_PREFIX):
        log.info("removed %s, left by a conversion that was killed", path)
    return _Image(config, image_platform, os_arch, blobs, (note,) if note else ())


class _Outputs:
    """The files one run writes: which image claimed each (two images never share a
    file), and, in a run that does not sign (``signing`` false), for each that had a
    signature beside it, the SHA-256 of the file it replaces, so that the run can tell a
    signature it made stale (a signing run replaces them all, unless it fails or is
    interrupted before: :meth:`drop_unsigned_signatures`). With a ``stage``
    directory, each file is written there first and :meth:`publish` moves it into place."""

    def __init__(self, signing: bool, claims: tuple[str | None, str] = (None, ""), stage: str | None = None) -> None:
        self._signing = signing
        self._claims_dir, self._claims_as = claims
        self._stage = stage
        self._owners: dict[str, str] = {}
        self._signed_before: dict[str, str | None] = {}
        self._unsigned: dict[str, str | None] = {}  # signing, unstaged: the file's stamp
        self._markers: dict[str, str] = {}  # path claimed in claims_dir -> its marker
        self._finals: dict[str, str] = {}  # staged path -> the path claimed

    def claim(self, path: str, display: str) -> str:
        """Reserve ``path`` for ``display``; returns where to write it: ``path``, or with a
        staging directory its place there (:meth:`publish` moves it to ``path``).

        Raises:
            OutputError: another image of this run has it (also one of another conversion
                sharing ``claims_dir``).
        """
        key = os.path.abspath(path)
        if key in self._owners:
            raise OutputError(f"{display} and {self._owners[key]} would both be written to {path}")
        if self._claims_dir is not None:
            self._claim_shared(key, display)
        self._owners[key] = display
        if not self._signing and os.path.lexists(signature_path(key)):
            self._signed_before[key] = Digest.of_file(key).hex if os.path.isfile(key) else None
        elif self._signing and self._stage is None and os.path.lexists(signature_path(key)):
            self._unsigned[key] = _file_stamp(key)
        if self._stage is None:
            return path
        staged = os.path.join(os.path.abspath(self._stage), os.path.basename(key))
        self._finals[staged] = key
        return staged

    def publish(self, converted: list[ConvertedACI]) -> list[ConvertedACI]:
        """Move the staged ACIs (with their signatures) to the paths claimed for them, one
        rename each, all of them or none: each file a move replaces is linked into the
        staging directory first, and put back should a later move fail (a directory at a
        path, another user's file in a sticky directory).

        Returns:
            ``converted`` with those paths.

        Raises:
            OutputError: a file cannot be moved, naming it; those moved before it are
                put back (but for a replaced file that could not be linked to be kept,
                another user's under ``fs.protected_hardlinks``, which the message names).
        """
        assert self._stage is not None
        moves = []
        for aci in converted:
            final = self._finals[aci.path]
            moves.append((aci.path, final))
            if os.path.lexists(signature_path(aci.path)):
                moves.append((signature_path(aci.path), signature_path(final)))
        done: list[tuple[str, str | None, bool]] = []  # (path, its former file kept in the stage, whether it had one)
        for number, (staged, dest) in enumerate(moves):
            kept: str | None = os.path.join(self._stage, f".replaced-{number}")
            try:
                os.link(dest, kept, follow_symlinks=False)
                had = True
            except OSError as err:
                had, kept = not isinstance(err, FileNotFoundError), None
            try:
                os.replace(staged, dest)
            except OSError as err:
                lost = _put_back(done)
                raise OutputError(f"writing {dest}: {err.strerror or err}: none of the {len(converted)} ACIs is "
                                  "written" + (f" ({', '.join(lost)} stayed replaced)" if lost else "")) from err
            done.append((dest, kept, had))
        return [dataclasses.replace(aci, path=self._finals[aci.path]) for aci in converted]

    def _claim_shared(self, key: str, display: str) -> None:
        """Claim ``key`` in the run's claims directory for ``claims_as`` (first come, first
        served; a claim of its own, made by an earlier attempt, is kept)."""
        assert self._claims_dir is not None
        marker = os.path.join(self._claims_dir, hashlib.sha256(os.fsencode(key)).hexdigest())
        mine = f"{self._claims_as}\n{display}"
        try:
            # written whole, then linked into place: a marker is never seen empty (by
            # another item, or by this one tried again after its worker died mid-claim)
            fd, draft = tempfile.mkstemp(prefix=".claim-", dir=self._claims_dir)
            try:
                with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
                    f.write(mine)
                os.link(draft, marker)
            finally:
                os.unlink(draft)
        except FileExistsError:
            try:
                with open(marker, encoding="utf-8", errors="replace") as f:
                    owner, _, owner_display = f.read().partition("\n")
            except OSError:
                owner, owner_display = "", ""
            if owner == self._claims_as:
                self._markers[key] = marker
                return
            raise OutputError(f"{display} would be written to {key}, which {owner or 'another item'} writes from "
                              f"{owner_display or 'another source'}: give one an 'output' or 'output_dir' of its own"
                              ) from None
        except OSError as err:
            raise OutputError(f"{display}: claiming {key} in {self._claims_dir}: {err.strerror or err}") from err
        self._markers[key] = marker

    def signed(self, path: str) -> None:
        """``path`` (claimed) has its new signature beside it."""
        self._unsigned.pop(os.path.abspath(path), None)

    def drop_unsigned_signatures(self) -> None:
        """In a signing run that failed or was interrupted (Ctrl-C while it signed, or
        copied an ACI into the conversion cache), remove ``<path>.asc`` beside each file it
        replaced and did not sign: the signature of the file replaced reads as tampering
        to ``verify`` ("BAD signature"); the file reads as unsigned instead. Best effort:
        the run's own error is the one raised."""
        for key, before in self._unsigned.items():
            if _file_stamp(key) != before:
                with contextlib.suppress(OSError):
                    os.unlink(signature_path(key))
                    log.warning("removed %s: it signed the ACI this run replaced and did not sign",
                                signature_path(key))

    def release_unwritten(self, written: Iterable[str]) -> None:
        """Give up the shared claims of the files the conversion did not write (it failed,
        or was stopped): another conversion of the run may write them, since no ``ok``
        one owns them.

        Args:
            written: the paths of the ACIs the conversion did write (their claims stay).
        """
        kept = {os.path.abspath(path) for path in written}
        for key, marker in self._markers.items():
            if key not in kept:
                with contextlib.suppress(OSError):
                    os.unlink(marker)

    def drop_stale_signatures(self, display: str, converted: list[ConvertedACI]) -> None:
        """Remove ``<path>.asc`` beside each of ``converted`` (written without signing)
        unless the file it signed is still there, byte for byte: a signature left beside
        a changed ACI reads as tampering to ``verify``.

        Raises:
            OutputError: a stale signature cannot be removed.
        """
        for aci in converted:
            if aci.path not in self._signed_before:
                continue
            before = self._signed_before.pop(aci.path)
            if before is not None and Digest.of_file(aci.path).hex == before:
                continue  # the same bytes: the signature still holds
            stale = signature_path(aci.path)
            try:
                os.unlink(stale)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise OutputError(f"{display}: removing {stale}, which signed the file this run replaced: "
                                  f"{err.strerror or err}") from err
            log.warning("%s: removed %s: it signed the ACI this run replaced (sign again with --sign)",
                        display, stale)


def _remove_unsigned(display: str, paths: list[str], signed: int) -> None:
    """Remove the ACIs a signing run wrote for one image when it could not sign
    ``paths[signed]``, and the signatures of the ones before it; one warning names what
    was removed. Best effort: the signing error is the one raised; a file that cannot be
    removed is named in a warning."""
    removed = []
    for number, path in enumerate(paths):
        for file in (path, signature_path(path)) if number < signed else (path,):
            try:
                os.unlink(file)
            except FileNotFoundError:
                continue
            except OSError as err:
                log.warning("%s: %s stays: removing it: %s", display, file, err.strerror or err)
                continue
            removed.append(file)
    if removed:
        log.warning("%s: removed %s: %s could not be signed", display, ", ".join(removed),
                    "it" if len(paths) == 1 else paths[signed])


def _file_stamp(path: str) -> str | None:
    """``path``'s :func:`~docker2aci.filestamp.stamp`, or ``None`` when there is no file: a
    file replaced (renamed over, copied) has another."""
    try:
        return stamp(os.stat(path))
    except OSError:
        return None


def _put_back(done: list[tuple[str, str | None, bool]]) -> list[str]:
    """Undo the moves :meth:`_Outputs.publish` made, last first: each path gets its former
    file back (kept as a link), or is removed when it had none.

    Returns:
        the paths whose former file was not kept, or could not be put back (they hold the
        new file).
    """
    lost = []
    for dest, kept, had in reversed(done):
        try:
            if kept is not None:
                os.replace(kept, dest)
            elif not had:
                os.unlink(dest)
            else:
                lost.append(dest)
        except OSError:
            lost.append(dest)
    return lost


def _write_image(display: str, resolved: ResolvedImage, wanted: Platform, options: ConvertOptions,
                 progress: ProgressHook | None, written: _Outputs,
                 cache: ConversionCache | None, *, local: bool = False) -> ConvertedACI:
    image = _prepare(display, resolved, wanted, options)
    config, image_platform, os_arch, blobs = image.config, image.platform, image.os_arch, image.blobs
    for note in image.notes:  # on every path: they are not in the cached record
        log.warning("%s: %s", display, note)
    if log.isEnabledFor(logging.DEBUG):  # --debug: what is about to be read
        log.debug("%s: config %s, platform %s, %d layer(s)", display, resolved.config_digest, image_platform,
                  len(blobs))
        for index, blob in enumerate(blobs):
            log.debug("%s: layer %d: %s, %s bytes, %s, diff ID %s", display, index, blob.what,
                      "?" if blob.size is None else blob.size, blob.media_type or "no media type", blob.diff_id)
    platform_named = image_platform != Platform.host() or options.platform == ALL_PLATFORMS
    suffix = file_platform_suffix(image_platform.os, image_platform.architecture,
                                  image_platform.variant) if platform_named else ""
    path = written.claim(os.path.join(options.output_dir, _output_name(options, resolved, os_arch, suffix)), display)
    # A registry's manifest digest pins the image. A local source is cached when its config
    # (verified against its digest) pins every layer through diff_ids; its name may come
    # from a file name, so the key holds the name too.
    content = (resolved.manifest_digest or resolved.config_digest) if local else resolved.manifest_digest
    key = None
    if cache is not None and content is not None and (config.diff_ids or not local):
        key = conversion_key(version=__version__, manifest=str(content),
                             index=str(resolved.index_digest), original=resolved.name.original_name,
                             platform=str(image_platform), compression=_compression_key(options),
                             file=os.path.basename(path), name=repr(resolved.name) if local else None,
                             ac_name=options.ac_name)
    if cache is None or key is None:
        return _noted(image, _convert_layers(display, resolved, config, blobs, os_arch, path, options, progress))
    with cache.lock(key):  # racing callers: one converts, the others reuse its result
        hit = cache.get(key)
        if hit is not None:
            try:
                publish_copy(hit, path)
            except DigestMismatch as err:
                log.warning("%s: the cached conversion is damaged (%s); converting again", display, err)
            else:
                log.debug("%s: unchanged since it was converted; reused the cached ACI", display)
                for w in hit.record.get("warnings", ()):
                    log.warning("%s: %s", display, w)
                return _noted(image, _from_record(path, hit.record, reused_from=hit.aci))
        file_hash = hashlib.sha256()
        converted = _convert_layers(display, resolved, config, blobs, os_arch, path, options, progress, file_hash)
        try:
            cache.put(key, path, {k: v for k, v in dataclasses.asdict(converted).items()
                                  if k not in ("path", "reused_from")},
                      aci_sha256=file_hash.hexdigest())
        except OutputError as err:
            log.warning("%s: not cached: %s", display, err)
        return _noted(image, converted)


def _noted(image: _Image, converted: ConvertedACI) -> ConvertedACI:
    """``converted`` with the request's warnings first (:attr:`_Image.notes`)."""
    return dataclasses.replace(converted, warnings=(*image.notes, *converted.warnings)) if image.notes else converted


def _convert_layers(display: str, resolved: ResolvedImage, config: ImageConfig, blobs: list[LayerBlob],
                    os_arch: tuple[str, str], path: str, options: ConvertOptions,
                    progress: ProgressHook | None, file_hash: Any = None) -> ConvertedACI:
    """Read the layers, squash them, translate the config and write the ACI at ``path``
    (``file_hash``, a hashlib object, is updated with the file's bytes as written)."""
    # The converter stages are imported only here: a warm re-conversion never loads them
    from converters.manifest import manifest_bytes
    from converters.rootfs import RootfsTree

    from .aci import write_aci
    from .layers import open_layers
    from .translate import image_manifest

    # Layers read in place are still being verified while they are squashed and the ACI
    # is written into its temporary file; it is published only once they have passed.
    # Until then any error (a layer's /etc/passwd the manifest reads, data that ends
    # early) is reported as a layer's digest error if there is one, and the warnings
    # drawn from the layers are logged only after.
    warnings: list[str] = []
    with _cyclic_gc_paused(), open_layers(blobs, options.tmp_dir, progress, options.max_layer_size) as layers:
        with layers.errors():
            tree = RootfsTree.from_layers(layers.tars)
            warnings.extend(tree.add_stdio_links())
            naming = _naming(resolved, options.ac_name)
            manifest = image_manifest(display, tree, config, naming, os_arch, warnings)
            image_id = write_aci(path, manifest_bytes(manifest), tree, options.compression,
                                 options.compression_level, before_publish=layers.verified, file_hash=file_hash)
    for w in warnings:
        log.warning("%s: %s", display, w)
    log.debug("%s: wrote %s, image ID %s", display, path, image_id)
    return _converted(path, image_id, manifest, naming.manifest_hash, warnings)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a conversion squashes and writes.

    The squash keeps two or three objects per layer entry alive until the ACI is written
    (tens of thousands), and each young-generation collection scans the newest of them
    again: about 5 % of an archive conversion's wall time. They form no reference cycles
    and reference counting frees everything else as usual, so memory is unchanged; the
    collector is switched back on (if it was on) when the last of the conversions running
    at once (in threads of one process) ends, however it ends.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_pause_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_pause_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


_gc_pause_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = True


def _converted(path: str, image_id: str, manifest: dict[str, Any], manifest_digest: str,
               warnings: list[str]) -> ConvertedACI:
    return ConvertedACI(path=os.path.abspath(path), image_id=image_id, name=manifest["name"],
                        labels={label["name"]: label["value"] for label in manifest["labels"]},
                        manifest=manifest, manifest_digest=manifest_digest, warnings=tuple(warnings))


def _naming(resolved: ResolvedImage, ac_name: str | None = None) -> Naming:
    """The image's name (``ac_name`` when given), labels and provenance annotations, as its
    manifest says them."""
    return Naming(
        name=ac_name or resolved.name.ac_name or resolved.name.repository,
        repository=resolved.name.repository,
        tag=resolved.name.tag,
        original_name=resolved.name.original_name,
        registry_url=resolved.name.registry,
        image_id=str(resolved.config_digest),
        manifest_hash=str(resolved.manifest_digest or resolved.config_digest),
        manifest_list_hash=str(resolved.index_digest) if resolved.index_digest else None,
    )


def _write_unsquashed(display: str, resolved: ResolvedImage, wanted: Platform, options: ConvertOptions,
                      progress: ProgressHook | None, written: _Outputs) -> list[ConvertedACI]:
    """``--nosquash``: one ACI per layer (see :mod:`docker2aci.unsquashed`), top first.
    Not cached: the conversion cache holds squashed images only."""
    from .layers import open_layers
    from .unsquashed import write_layer_acis

    image = _prepare(display, resolved, wanted, options)
    warnings = list(image.notes)
    # -<os>-<arch>[-<variant>], as a squashed ACI's (amd64 and amd64/v3 are two chains)
    platform = file_platform_suffix(image.platform.os, image.platform.architecture, image.platform.variant)
    count = len(image.blobs)
    paths = [written.claim(os.path.join(options.output_dir, aci_file_name(
        resolved.name.repository, resolved.name.tag, f"{platform}-{count - 1 - index}")), display)
        for index in range(count)]
    naming = _naming(resolved, options.ac_name)
    with _cyclic_gc_paused(), open_layers(image.blobs, options.tmp_dir, progress, options.max_layer_size) as layers:
        acis = write_layer_acis(display, layers, _layer_chain(image.blobs), image.config, naming, image.os_arch, paths,
                                options.compression, options.compression_level, warnings)
    for w in warnings:
        log.warning("%s: %s", display, w)
    return [_converted(aci.path, aci.image_id, aci.manifest, naming.manifest_hash, warnings) for aci in acis]


def _layer_chain(blobs: Sequence[LayerBlob]) -> list[Digest]:
    """Each layer's identity together with the layers below it, base first: its chain ID
    (image-spec config.md) over the diff IDs, or over the blob digests where the source
    pins none (schema 1); a legacy archive's v1 layer IDs, which are that already (the
    reference tool names the layers of such an archive by them)."""
    from .unsquashed import chain_ids

    legacy = [blob.legacy_id for blob in blobs]
    if all(legacy):
        return [Digest("sha256", layer_id) for layer_id in legacy if layer_id]
    identities = [blob.diff_id or blob.digest for blob in blobs]
    assert all(identities), "every source pins a layer by a diff ID, a blob digest or a legacy ID"
    return chain_ids([d for d in identities if d])


def _from_record(path: str, record: dict[str, Any], reused_from: str) -> ConvertedACI:
    """A ConvertedACI for a cached conversion (``reused_from``) published at ``path``."""
    return ConvertedACI(path=os.path.abspath(path), image_id=record["image_id"], name=record["name"],
                        labels=dict(record["labels"]), manifest=record["manifest"],
                        manifest_digest=record["manifest_digest"], warnings=tuple(record.get("warnings", ())),
                        reused_from=reused_from)
