"""The ``discover`` command: fetch an image by appc discovery (see :mod:`docker2aci.discovery`).
Imported only when it runs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from converters.errors import BadConfig
from converters.names import appc_os_arch

from .cli_common import EXIT_OK, TRUST_DIR_DEFAULT, Parser, flag, json_failure, path, setup_logging
from .discovery import (
    INSECURE_OPTIONS,
    DiscoverOptions,
    check_labels,
    discover,
    split_name,
)
from .errors import UsageError
from .manifest import Platform
from .redact import redact_url

_DESCRIPTION = """Find an image by appc discovery (appc spec/discovery.md), fetch it, check it and write
it to --output-dir as <NAME with '/' as '-'>-<version>-<os>-<arch>.aci, its signature beside it as
<ACI>.asc; print '<image_id> <path>', or a JSON object with --json.

NAME is an AC name whose first component is the host asked (https://NAME?ac-discovery=1, then its
parent paths). Labels: NAME:VERSION or NAME,version=VERSION, and any LABEL=VALUE; os and arch default
to the host's (appc names: linux, amd64 / aarch64 ...). Without a version, templates that need none
are used, else {version} is rendered as 'latest'; the image's own version is then not checked.

The image must be signed by a key of the trust store trusted for its name (as 'docker2aci verify'
and 'run' check), unless --insecure-options=image; its manifest must carry NAME and every label
asked for. --insecure-options=http allows plain http: http templates and redirects, and http when an
https connection fails. Exit status: 0 written, 1 failure (nothing is left in --output-dir; a directory
it made for it is removed), 2 usage."""


def discover_parser(prog: str) -> argparse.ArgumentParser:
    """The argument parser of ``docker2aci discover``."""
    p = Parser(prog=f"{prog} discover", allow_abbrev=False, description=_DESCRIPTION,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="NAME[:VERSION][,LABEL=VALUE...]",
                   help="the AC name and labels, e.g. example.com/app:1.0,os=linux,arch=amd64")
    flag(p, "output-dir", default=".", type=path, metavar="DIR", help="Where to write the ACI (default: .)")
    flag(p, "insecure-options", default="", metavar="LIST",
         help="Comma-separated checks to skip: 'http' allows plain http, 'image' skips the signature check")
    flag(p, "trust-dir", type=path, metavar="DIR",
         help=f"The trust store the signature is checked against (default: {TRUST_DIR_DEFAULT})")
    flag(p, "trust-keys-from-https", action="store_true",
         help="Trust the keys the discovery page announces (ac-discovery-pubkeys) for NAME, "
              "when both come over https (as rkt's --trust-keys-from-https)")
    flag(p, "json", action="store_true",
         help='Print {"image_id", "path", "name", "labels", "url", "signature", "signer"} as one JSON object '
              '(on failure: {"source", "status": "failed", "error", ...})')
    flag(p, "debug", action="store_true", help="Enables debug messages")
    return p


def parse_image_argument(text: str) -> tuple[str, dict[str, str]]:
    """``NAME[:VERSION][,LABEL=VALUE...]`` → ``(name, labels)`` (rkt's image strings).

    Raises:
        UsageError: a malformed name, label or version, a label given twice, or a URL (quoted
            without its ``user:password@``: it was read as a version, and shown whole).
    """
    if "://" in text:
        raise UsageError(f"{redact_url(text)!r} is a URL: give the app's name (NAME[:VERSION][,LABEL=VALUE...]); "
                         "discovery finds its URL")
    head, *rest = text.split(",")
    name, colon, version = head.partition(":")
    labels: dict[str, str] = {}
    if colon:
        if not version:
            raise UsageError(f"{text!r}: empty version after ':'")
        labels["version"] = version
    for item in rest:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"{text!r}: {item!r} is not LABEL=VALUE")
        if key in labels:
            raise UsageError(f"{text!r}: the label {key} is given twice")
        labels[key] = value
    split_name(name, need_path=False)
    return name, check_labels(labels)


def _insecure_options(text: str) -> frozenset[str]:
    insecure = frozenset(o.strip() for o in text.split(",") if o.strip())
    unknown = insecure - INSECURE_OPTIONS
    if unknown:
        raise UsageError(f"--insecure-options: unknown option(s) {', '.join(sorted(unknown))} "
                         f"(choose from {', '.join(sorted(INSECURE_OPTIONS))})")
    return insecure


def _with_host_platform(labels: dict[str, str]) -> dict[str, str]:
    """``labels`` with os and arch defaulting to the host's, in appc's names."""
    if "os" in labels and "arch" in labels:
        return labels
    host = Platform.host()
    try:
        os_name, arch = appc_os_arch(host.os, host.architecture, host.variant)
    except BadConfig as err:
        raise UsageError(f"the host's platform has no appc name ({err}): give os=... and arch=...") from err
    return {"os": os_name, "arch": arch, **labels}


def cmd_discover(argv: Sequence[str], prog: str) -> int:
    """``docker2aci discover [FLAGS] NAME[:VERSION][,LABEL=VALUE...]``: see ``--help``."""
    args = discover_parser(prog).parse_args(list(argv))
    setup_logging(args.debug)
    insecure = _insecure_options(args.insecure_options)
    name, labels = parse_image_argument(args.image)
    options = DiscoverOptions(output_dir=args.output_dir, insecure_http="http" in insecure,
                              insecure_image="image" in insecure, trust_dir=args.trust_dir,
                              trust_keys_from_https=args.trust_keys_from_https)
    with json_failure(args.json, args.image):
        image = discover(name, _with_host_platform(labels), options)
    if args.json:
        print(json.dumps(image.to_json(), separators=(",", ":")))
    else:
        print(f"{image.image_id} {image.path}")
    return EXIT_OK
