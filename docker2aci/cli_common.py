"""What every ``docker2aci`` command shares: exit statuses, the argument parser that
raises instead of exiting, Go-style flags, the flags that say how to read, convert and
write images (convert, run, fetch, batch, mirror), and logging set-up."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import Docker2ACIError, UsageError

if TYPE_CHECKING:
    from .pipeline import ConvertOptions

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

TRUST_DIR_DEFAULT = ("/etc/docker2aci/trust for root, else $XDG_CONFIG_HOME/docker2aci/trust or "
                     "~/.config/docker2aci/trust")
"""Where the trust store is without ``--trust-dir``, as ``--help`` says it
(:func:`docker2aci.trust.default_trust_dir`)."""
KEYS_DIR_DEFAULT = "$XDG_CONFIG_HOME/docker2aci/keys or ~/.config/docker2aci/keys"
"""Where the signing keyring is without ``--keys-dir`` (:func:`docker2aci.signing.default_keys_dir`)."""
CACHE_DIR_DEFAULT = "$XDG_CACHE_HOME/docker2aci or ~/.cache/docker2aci"
PULL_POLICY_CHOICES = ("new", "update", "never")
"""``--pull-policy``: :data:`docker2aci.sources.base.PULL_POLICIES`, which importing here
would load the source modules for every command (a test holds the two equal)."""
"""Where the cache and tree store are without ``--cache-dir`` (:func:`docker2aci.store.default_cache_dir`)."""


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` owns the exit status, and
    names the closest flag for a misspelled one."""

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        """No abbreviation when ``allow_abbrev`` is false, for ``-flag`` too: argparse
        before 3.12 still took any prefix of a single-dash flag, so Docker's ``run -e
        FOO=bar`` ran ``--exec FOO=bar`` and ``-p 8080:80`` was ``--platform``."""
        if self.allow_abbrev:
            return super()._get_option_tuples(option_string)  # type: ignore[no-any-return]
        return []

    def error(self, message: str) -> None:  # type: ignore[override]
        prefix = "unrecognized arguments: "
        words = message[len(prefix):].split() if message.startswith(prefix) else []
        options = [name for name in (word.split("=", 1)[0] for word in words)
                   if name.startswith("-") and name not in ("-", "--")]
        if options and words[0].startswith(options[0]):  # argparse listed it with the words after it
            raise UsageError(f"unknown option {options[0]}" + self._closest_flag(options[0]),
                             unknown_option=options[0])
        raise UsageError(message + (self._closest_flag(options[0]) if options else ""))

    def _closest_flag(self, name: str) -> str:
        """``; did you mean --compression?`` for ``--compresion``."""
        if len(name) == 2 and name[0] == "-" and name[1] != "-":  # Docker's -e, -v, -p ...
            return f"; {name} is no flag of docker2aci: write flags whole (--help lists them)"
        import difflib  # only for this message

        known = [s for action in self._actions for s in action.option_strings if s.startswith("--")]
        close = difflib.get_close_matches("--" + name.lstrip("-"), known, n=1)
        return f"; did you mean {close[0]}?" if close else ""


def path(text: str) -> str:
    """argparse type of a flag naming a file or directory: an empty value (an unset
    shell variable, ``--cache-dir "$CACHE"``) is a usage error, never the default's
    place (``gc --cache-dir ''`` cleaned the default tree store)."""
    if not text:
        raise argparse.ArgumentTypeError("empty: give a path")
    return text


def key_name(text: str) -> str:
    """argparse type of a flag naming a signing key (a key file, a fingerprint or key ID):
    an empty value (``--sign "$KEY"`` with ``KEY`` unset) is a usage error, never "do not
    sign" (it wrote unsigned ACIs and exited 0)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: give a key file, or a key's fingerprint or key ID")
    return text


def gpg_key_name(text: str) -> str:
    """argparse type of ``--gpg-key``: as :func:`key_name`, for a key of the gpg keyring."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: give a key ID or fingerprint of your gpg keyring")
    return text


def creds_text(text: str) -> str:
    """argparse type of ``--creds``: an empty value (``--creds "$CREDS"`` with ``CREDS``
    unset) is a usage error, never "the Docker config files' credentials" (the reference
    tool took it as no credentials at all); the rest is checked when a registry is
    reached (:meth:`~docker2aci.registry.Credentials.parse`)."""
    if not text:
        raise argparse.ArgumentTypeError("empty: give USER:PASSWORD (or leave the flag out for the Docker "
                                         "config files' credentials)")
    return text


def platform_text(text: str) -> str:
    """argparse type of ``--platform``: an empty value (an unset shell variable) is a usage
    error, not the host's platform; the rest is checked by :meth:`~.manifest.Platform.parse`."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: give os/arch[/variant] (or leave the flag out for the host's)")
    return text


@contextlib.contextmanager
def json_failure(enabled: bool, source: str) -> Iterator[None]:
    """With ``--json`` (``enabled``): an error of the block (a
    :class:`~docker2aci.errors.Docker2ACIError`, not a usage error) also prints one JSON
    line on standard output saying so, the entry ``batch`` reports for a failed item
    (:meth:`~docker2aci.jobs.JobResult.to_json`: ``source``, ``status`` ``failed``,
    ``error``, ...), so that a script reading standard output gets JSON, not nothing. The
    error is raised on: ``main`` still prints it on standard error and picks the exit
    status. A usage error (exit 2) prints nothing there, as with ``batch`` and ``mirror``.

    Args:
        enabled: whether ``--json`` was given.
        source: what failed, as given (an image source, an ACI's path; a URL's
            ``user:password@`` is shown as ``***@``).
    """
    try:
        yield
    except Docker2ACIError as err:
        if enabled and not isinstance(err, UsageError):
            import json

            from .jobs import FAILED, JobResult

            print(json.dumps(JobResult(source, FAILED, str(err)).to_json(), separators=(",", ":")))
        raise


def flag(parser: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """Add ``--name`` that also works as ``-name`` (Go's flag package)."""
    parser.add_argument(f"--{name}", f"-{name}", **kwargs)  # type: ignore[arg-type]


class RedactingFormatter(logging.Formatter):
    """A formatter whose tracebacks (``--debug`` logs them) are redacted: a requests or
    urllib3 exception in a chain quotes the URL it failed on, a presigned blob redirect's
    signature or a proxy's ``user:password@`` among it
    (:func:`docker2aci.redact.redact_text`); and whose lines never drive a
    terminal: what an image, a registry, an archive or a discovery page put in a message
    is shown escaped (:func:`docker2aci.terminal.printable`)."""

    def format(self, record: logging.LogRecord) -> str:
        from .terminal import printable

        return printable(super().format(record), newlines=True)

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        from .redact import redact_text  # only when there is a traceback to show

        return redact_text(super().formatException(ei))


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever ``sys.stderr`` is when a record is emitted (as
    logging's last resort does), not the stream it was made with: while a progress bar is
    shown, rich puts a proxy there that prints the line above the bar (a handler holding
    the terminal itself wrote the line after the bar, on the bar's own line)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


def progress_console() -> Any:
    """The rich ``Console`` that progress bars are drawn on: standard error when it is an
    interactive terminal, else ``None`` (a pipe, a file, ``TERM=dumb``: there rich drew no
    bar but still wrote an empty line at the end). What is printed above a bar (a log line,
    :class:`StderrHandler`) is soft-wrapped: it stays one line, however long."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    return console if console.is_interactive else None


def setup_logging(debug: bool) -> None:
    """Log to stderr: INFO, or DEBUG with ``--debug``."""
    handler = StderrHandler()
    handler.setFormatter(RedactingFormatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
    # urllib3's debug lines carry full URLs (presigned blob redirects): never shown
    logging.getLogger("urllib3").setLevel(logging.INFO)


def output_flags(p: argparse.ArgumentParser) -> None:
    """The flags that say how ACIs are written: compression, its level, the output directory."""
    from .compression import GZIP_LEVEL, Compression

    flag(p, "compression", default="gzip", choices=[c.value for c in Compression],
         help="Type of compression to use; allowed values: gzip, none, xz, bzip2 (the appc set)")
    flag(p, "compression-level", type=int, default=GZIP_LEVEL, metavar="N",
         help=f"gzip level: 0-3 ISA-L, fast (default {GZIP_LEVEL}); 4-9 zlib, smaller and several times slower")
    flag(p, "output-dir", default=".", type=path, metavar="DIR", help="Where to write the ACI (default: .)")


def source_flags(p: argparse.ArgumentParser, *, every_platform: bool, files: bool = True,
                 pull_policy: bool = True) -> None:
    """The flags that say how to read and convert an image source (convert, run, fetch);
    ``files``: the sources may be local files (``--image`` picks one of their images);
    ``pull_policy``: offer ``--pull-policy`` (else ``update``)."""
    if files:
        flag(p, "image", dest="select", metavar="IMAGE_NAME[:TAG]",
             help="When converting a local file, it selects a particular image to convert. "
                  "Format: IMAGE_NAME[:TAG]")
    else:
        p.set_defaults(select=None)
    flag(p, "insecure-skip-verify", action="store_true",
         help="Don't verify certificates when fetching images")
    flag(p, "insecure-allow-http", action="store_true",
         help="Uses unencrypted connections when fetching images")
    flag(p, "platform", type=platform_text, metavar="OS/ARCH[/VARIANT]",
         help="Platform to pick from a manifest list or index (default: the host's)"
              + ("; 'all' converts every platform" if every_platform else ""))
    flag(p, "tmp-dir", type=path, metavar="DIR", help="Where to unpack layers (default: $TMPDIR)")
    flag(p, "max-layer-size", type=_size, default=None, metavar="SIZE",
         help="Refuse a layer (or a compressed archive) larger than SIZE uncompressed (a decompression "
              "bomb); bytes, or with a K, M, G or T suffix, powers of 1024: 512M is 512 MiB (default: 16G)")
    flag(p, "creds", type=creds_text, metavar="USER:PASS", help="Registry credentials (default: ~/.docker/config.json)")
    flag(p, "cert-dir", type=path, metavar="DIR", help="CA certificates (*.crt) and client.cert/client.key for the "
         "registry, as one host's directory of Docker's certs.d; or the certs.d root")
    flag(p, "cache-dir", type=path, metavar="DIR",
         help=f"Blob and conversion cache, and the tree store (default: {CACHE_DIR_DEFAULT})")
    flag(p, "no-cache", action="store_true", help="Convert again even if this manifest was converted before")
    if pull_policy:
        flag(p, "pull-policy", choices=PULL_POLICY_CHOICES, default="update",
             help="When to ask the registry what a tag names: 'update' every time (default); 'new' only for a "
                  "tag never fetched with this cache (else the image it named then: runs offline); 'never' not "
                  "at all")
    else:
        p.set_defaults(pull_policy="update")
    flag(p, "sign", type=key_name, metavar="KEYFILE",
         help="Sign every ACI with this secret key file (or the fingerprint/key ID of a key in the "
              "keys keyring); the ASCII-armored detached signature is written to <ACI>.asc")
    flag(p, "sign-passphrase-file", type=path, metavar="FILE",
         help="The passphrase of the signing key: the first line of FILE")
    flag(p, "gpg-key", type=gpg_key_name, metavar="ID",
         help="Sign with this key of your gpg keyring (GNUPGHOME honoured) instead of --sign")


def _size(text: str) -> int:
    """argparse type of ``--max-layer-size``: see :func:`docker2aci.limits.parse_size`."""
    from .limits import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def convert_options(args: argparse.Namespace, **fixed: object) -> ConvertOptions:
    """ConvertOptions from the flags of :func:`source_flags`."""
    from .pipeline import ConvertOptions

    values: dict[str, object] = {
        "image": args.select, "platform": args.platform, "tmp_dir": args.tmp_dir or None, "creds": args.creds,
        "cert_dir": args.cert_dir, "insecure_skip_verify": args.insecure_skip_verify,
        "insecure_allow_http": args.insecure_allow_http, "cache_dir": args.cache_dir,
        "use_cache": not args.no_cache, "sign_key": args.sign, "sign_passphrase_file": args.sign_passphrase_file,
        "gpg_key": args.gpg_key, "pull_policy": args.pull_policy}
    if getattr(args, "max_layer_size", None) is not None:  # a parser without source_flags has none
        values["max_layer_size"] = args.max_layer_size
    values.update(fixed)
    return ConvertOptions(**values)  # type: ignore[arg-type]
