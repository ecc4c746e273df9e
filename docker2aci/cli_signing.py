"""The signing commands: ``keys``, ``sign``, ``verify`` and ``trust`` (see
:mod:`docker2aci.signing` and :mod:`docker2aci.trust`). Imported only when one of them
runs."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
from typing import Sequence

from .cli_common import EXIT_ERROR, EXIT_OK, Parser as _Parser, flag as _flag, gpg_key_name as _gpg_key_name
from .cli_common import key_name as _key_name, path as _path
from .cli_common import KEYS_DIR_DEFAULT, TRUST_DIR_DEFAULT
from .cli_common import setup_logging as _setup_logging
from .errors import Docker2ACIError, SigningError, UsageError
from .signing import (
    DEFAULT_ALGORITHM,
    KeyAlgorithm,
    default_keys_dir,
    export_key,
    format_fingerprint,
    generate_key,
    import_key,
    key_info,
    list_keys,
    open_signer,
    publish_text,
    read_passphrase_file,
    sign_file,
    verify_aci,
    write_key_pair,
)
from .terminal import printable
from .trust import TrustStore, check_prefix, default_trust_dir, read_certs

log = logging.getLogger("docker2aci")


_TRUST_DIR_HELP = f"The trust store (default: {TRUST_DIR_DEFAULT})"
_KEYS_DESCRIPTION = """Manage OpenPGP signing keys (RFC 4880 v4 keys, made with pysequoia).

'keys generate' writes a key pair to PREFIX.pub.asc and PREFIX.sec.asc (the secret key mode
0600), or, without --output, into the keyring. 'keys import', 'keys export' and 'keys list'
act on the keyring: a directory of YOUR signing keys (default
$XDG_CONFIG_HOME/docker2aci/keys or ~/.config/docker2aci/keys, --keys-dir), one file per key
named <fingerprint>.sec.asc (mode 0600) or <fingerprint>.pub.asc. A key of the keyring can
be named by fingerprint or key ID wherever a key file is asked for (--sign, sign --key).

The keys you trust to sign the images you run are not here: they are in the trust store,
managed with 'docker2aci trust'. To let others run your images, give them your public key
('keys export FINGERPRINT') for their 'docker2aci trust add'."""


def keys_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"{prog} keys", allow_abbrev=False, description=_KEYS_DESCRIPTION,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    gen = sub.add_parser("generate", help="Generate a signing key pair", allow_abbrev=False)
    _flag(gen, "name", required=True, metavar="'NAME <EMAIL>'", help="The key's user ID")
    _flag(gen, "output", type=_path, metavar="PREFIX",
          help="Write PREFIX.pub.asc and PREFIX.sec.asc (default: into the keyring)")
    _flag(gen, "algorithm", default=DEFAULT_ALGORITHM.value, choices=[a.value for a in KeyAlgorithm],
          help=f"Key type (default {DEFAULT_ALGORITHM.value}; rkt verifies RSA keys)")
    _flag(gen, "passphrase-file", type=_path, metavar="FILE", help="Protect the secret key with the first line of FILE")
    _flag(gen, "expires", type=int, metavar="DAYS", help="The key expires after DAYS days (default: never)")
    imp = sub.add_parser("import", help="Copy a key file into the keyring", allow_abbrev=False)
    imp.add_argument("file", metavar="KEYFILE", type=_path)
    exp = sub.add_parser("export", help="Print a key's ASCII-armored public key", allow_abbrev=False)
    exp.add_argument("key", metavar="KEY", help="A fingerprint or key ID of the keyring, or a key file")
    _flag(exp, "output", type=_path, metavar="FILE", help="Write to FILE instead of standard output")
    _flag(exp, "secret", action="store_true", help="Export the secret key (needs --output; mode 0600)")
    sub.add_parser("list", help="List the keys of the keyring", allow_abbrev=False)
    for action in (gen, imp, exp, sub.choices["list"]):
        _flag(action, "keys-dir", type=_path, metavar="DIR", help=f"The keyring directory (default: {KEYS_DIR_DEFAULT})")
    return p


def cmd_keys(argv: Sequence[str], prog: str) -> int:
    """``docker2aci keys generate|import|export|list``: see ``docker2aci keys --help``."""
    args = keys_parser(prog).parse_args(list(argv))
    _setup_logging(False)
    keys_dir = args.keys_dir or default_keys_dir()
    if args.action == "generate":
        passphrase = read_passphrase_file(args.passphrase_file) if args.passphrase_file else None
        key = generate_key(args.name, KeyAlgorithm(args.algorithm), passphrase=passphrase,
                           validity_days=args.expires)
        if args.output:
            public, secret = write_key_pair(args.output, key)
        else:
            os.makedirs(keys_dir, mode=0o700, exist_ok=True)
            public, secret = write_key_pair(os.path.join(keys_dir, key.fingerprint), key)
        print(f"Generated key {format_fingerprint(key.fingerprint)}\n  {printable(args.name)}")
        print(f"Public key: {public}\nSecret key: {secret}")
    elif args.action == "import":
        for info, path in import_key(args.file, keys_dir):
            print(f"Imported {info.describe()}\n  as {path}")  # describe() shows user IDs escaped
    elif args.action == "export":
        if args.secret and not args.output:
            raise UsageError("keys export --secret writes a secret key: give --output FILE")
        text = export_key(args.key, keys_dir, secret=args.secret)
        if args.output:
            publish_text(args.output, text, 0o600 if args.secret else 0o644)
        else:
            sys.stdout.write(text)
    else:
        keys = list_keys(keys_dir)
        for info, path in keys:
            print(info.describe())
        if not keys:  # stdout stays empty for scripts; a person learns where it looked
            print(f"No keys in {printable(keys_dir)} (docker2aci keys generate --name NAME, or "
                  "keys import KEYFILE, adds one)", file=sys.stderr)
    return EXIT_OK


def sign_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"{prog} sign", allow_abbrev=False,
                description="Sign an ACI as it is on disk: an ASCII-armored detached OpenPGP signature "
                            "written atomically to ACI.asc.")
    p.add_argument("aci", metavar="ACI", nargs="+", type=_path)
    _flag(p, "key", type=_key_name, metavar="KEYFILE",
          help="A secret key file, or the fingerprint/key ID of a key in the keyring (docker2aci keys)")
    _flag(p, "gpg-key", type=_gpg_key_name, metavar="ID",
          help="Sign with this key of your gpg keyring (GNUPGHOME honoured)")
    p.add_argument("--passphrase-file", "-passphrase-file", "--sign-passphrase-file",
                   dest="passphrase_file", type=_path, metavar="FILE",
                   help="The key's passphrase: the first line of FILE")
    return p


def cmd_sign(argv: Sequence[str], prog: str) -> int:
    """``docker2aci sign ACI... (--key KEY | --gpg-key ID) [--passphrase-file FILE]``."""
    args = sign_parser(prog).parse_args(list(argv))
    _setup_logging(False)
    if not (args.key or args.gpg_key):
        raise UsageError("sign needs --key KEYFILE or --gpg-key ID")
    if args.key and args.gpg_key:  # open_signer would name conversion's --sign, which sign has not
        raise UsageError("--key and --gpg-key exclude each other")
    signer = open_signer(key=args.key, passphrase_file=args.passphrase_file, gpg_key=args.gpg_key)
    assert signer is not None
    from .acifile import read_manifest
    from .errors import InvalidACI

    for aci in args.aci:
        if not os.path.isfile(aci):
            what = "a directory" if os.path.isdir(aci) else "not a regular file" if os.path.lexists(aci) \
                else "no such file"
            raise SigningError(f"{aci}: {what}")
        try:
            with open(aci, "rb"):
                pass
        except OSError as err:
            raise SigningError(f"{aci}: {err.strerror or err}") from err
        try:  # a signature of anything else would be of no use to rkt or to verify (new-user trial)
            read_manifest(aci)
        except InvalidACI as err:
            raise SigningError(f"{aci}: not an ACI ({err}): sign signs ACIs") from err
    for aci in args.aci:  # each checked first: nothing is signed when one of them is wrong
        print(sign_file(aci, signer))
    return EXIT_OK


def verify_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"{prog} verify", allow_abbrev=False,
                description="Check ACI.asc against the keys trusted for the image's name (its manifest's "
                            "'name'): root keys and keys trusted for the name or a parent prefix. Exit "
                            "status 0 when every signature is accepted, 1 when one is refused (each ACI "
                            "is checked and reported).")
    p.add_argument("aci", metavar="ACI", type=_path, nargs="+")
    _flag(p, "signature", type=_path, metavar="FILE", help="The detached signature (default: ACI.asc; "
                                                          "with one ACI only)")
    _flag(p, "trust-dir", type=_path, metavar="DIR", help=_TRUST_DIR_HELP)
    return p


def cmd_verify(argv: Sequence[str], prog: str) -> int:
    """``docker2aci verify ACI...``: 0 when every signature is accepted, 1 when one is
    refused; each ACI is checked and gets its line (one ACI: its refusal is the error)."""
    args = verify_parser(prog).parse_args(list(argv))
    _setup_logging(False)
    if args.signature and len(args.aci) > 1:
        raise UsageError("--signature is the signature of one ACI: give it with one ACI")
    status = EXIT_OK
    for aci in args.aci:
        try:
            result = verify_aci(aci, args.trust_dir or default_trust_dir(), signature=args.signature)
        except Docker2ACIError as err:
            if len(args.aci) == 1:
                raise
            print(f"Error: {printable(str(err), newlines=True)}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        trusted = ("as a root key" if result.trusted_as.prefix is None
                   else f'for prefix "{result.trusted_as.prefix}"')
        print(f'Signature verified: "{printable(result.name)}" ({aci}) signed by key ID {result.signer.key_id} '
              f"({format_fingerprint(result.signer.fingerprint)}), trusted {trusted}")
    return status


def trust_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"{prog} trust", allow_abbrev=False,
                description="Manage the keys trusted to sign the images you run, in rkt's layout: "
                            "TRUST_DIR/trustedkeys/prefix.d/<prefix>/<fingerprint> and "
                            "TRUST_DIR/trustedkeys/root.d/<fingerprint>.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="Trust a public key for a prefix, or for every image (--root)",
                         allow_abbrev=False)
    add.add_argument("file", metavar="KEYFILE", type=_path)
    scope = add.add_mutually_exclusive_group(required=True)
    scope.add_argument("--prefix", "-prefix", metavar="PREFIX",
                       help="Trust the key for images named PREFIX or PREFIX/...")
    scope.add_argument("--root", "-root", action="store_true", help="Trust the key for every image")
    _flag(add, "yes", action="store_true", help="Do not ask for confirmation on a terminal")
    sub.add_parser("list", help="List the trusted keys", allow_abbrev=False)
    rm = sub.add_parser("remove", help="Stop trusting a key", allow_abbrev=False)
    rm.add_argument("fingerprint", metavar="FINGERPRINT", nargs="+",  # pasted in groups, as gpg and keys print it
                    help="The key's fingerprint (40 or 64 hex digits; spaces between groups allowed, quoted or not)")
    only = rm.add_mutually_exclusive_group()
    only.add_argument("--prefix", "-prefix", metavar="PREFIX", help="Only for this prefix")
    only.add_argument("--root", "-root", action="store_true", help="Only as a root key")
    for action in (add, sub.choices["list"], rm):
        _flag(action, "trust-dir", type=_path, metavar="DIR", help=_TRUST_DIR_HELP)
    return p


def cmd_trust(argv: Sequence[str], prog: str) -> int:
    """``docker2aci trust add|list|remove``: see ``docker2aci trust --help``."""
    args = trust_parser(prog).parse_args(list(argv))
    _setup_logging(False)
    store = TrustStore(args.trust_dir or default_trust_dir())
    if args.action == "add":
        prefix = None if args.root else check_prefix(args.prefix)
        what = "every image (root key)" if prefix is None else f'prefix "{prefix}"'
        for cert in read_certs(args.file):
            info = key_info(bytes(cert), args.file)
            print(f"Key fingerprint: {format_fingerprint(info.fingerprint)}")
            for uid in info.user_ids:  # the key's own text: never lets it drive the terminal
                print(f"  {printable(uid)}")
            if info.revoked:
                log.warning("this key is revoked: images signed by it will be refused")
            elif info.expires is not None and info.expires <= datetime.datetime.now(datetime.UTC):
                log.warning("this key has expired: images signed by it will be refused")
            if sys.stdin.isatty() and not args.yes:
                sys.stdout.flush()
                try:
                    answer = input(f"Are you sure you want to trust this key for {what} (yes/no)? ")
                except EOFError:  # Ctrl-D, or the terminal closed: no answer is a no
                    print()
                    answer = ""
                if answer.strip().lower() not in ("y", "yes"):
                    print("Not trusted.", file=sys.stderr)
                    return EXIT_ERROR
            key = store.add(cert, prefix)
            scope = "as a root key" if prefix is None else f'for prefix "{prefix}"'
            print(f'Added key {scope} at "{key.path}"')
    elif args.action == "list":
        entries = store.entries()
        if not entries:  # stdout stays empty for scripts; a person learns where it looked
            print(f"No trusted keys in {printable(str(store.root))} (docker2aci trust add --prefix PREFIX "
                  "KEYFILE, or --root, adds one)", file=sys.stderr)
        for key in entries:
            if key.problem is not None:
                print(f"{key.fingerprint}  {key.scope}  UNUSABLE: {key.problem} ({key.path})")
                continue
            assert key.cert is not None
            print(f"{key.scope}: {key_info(bytes(key.cert), key.path).describe()}")
    else:
        fingerprint = " ".join(args.fingerprint)
        removed = store.remove(fingerprint, None if args.root else args.prefix, root_only=args.root)
        if not removed:
            raise SigningError(f"key {fingerprint} is not in the trust store {store.root}")
        for path in removed:
            print(f"Removed {path}")
    return EXIT_OK
