"""Turn an appc image manifest and the run options into what the app is started with.

Pure functions: the image's ``/etc/passwd`` and ``/etc/group`` arrive as text (never
the host's files), and the owner of a file named by a path-form user or group comes
from a callback. The result is a :class:`ProcessSpec`.

References: appc spec ``spec/types.md`` ("Image Manifest Schema": ``app.exec``,
``user``, ``group``, ``workingDirectory``, ``environment``, ``supplementaryGIDs``);
``spec/ace.md`` ("Execution Environment": ``PATH`` default, ``AC_APP_NAME``); rkt's
``run --set-env NAME=VALUE`` for the overrides.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from converters.numbers import MAX_OWNER_ID, plain_decimal
from docker2aci import untrustedjson
from docker2aci.errors import RunnerError

logger = logging.getLogger(__name__)

#: ``PATH`` given to an app whose image sets none (the appc ACE default, as in rkt).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: ``SHELL`` given to an app whose image sets none: rkt's stage1 default (its
#: ``common.defaultEnv``: ``PATH``, ``SHELL=/bin/sh``, ``USER``, ``LOGNAME``, ``HOME``), not
#: the passwd entry's shell (often ``/usr/sbin/nologin`` for a service account).
DEFAULT_SHELL = "/bin/sh"

#: ``USER`` and ``LOGNAME`` of a root app whose image has no passwd entry for uid 0
#: (rkt's stage1 default for both).
ROOT_NAME = "root"

#: ``container`` given to an app whose image sets none: appc ``spec/ace.md``
#: ("Execution Environment") says it MUST be set, to the executor's name (a hint that the
#: app runs in a container; systemd reads it). An image's own value (``ENV container
#: docker``) and ``--set-env`` win.
CONTAINER_VALUE = "docker2aci"

#: Annotation holding the Docker ``Entrypoint`` as a JSON array string.
ENTRYPOINT_ANNOTATION = "appc.io/docker/entrypoint"

#: The prefix of the annotations a conversion from a Docker or OCI image writes (at
#: least ``appc.io/docker/imageid``): their presence says the words after ``--`` replace
#: Docker's Cmd, their absence that they are appended to the exec, as rkt appends them.
DOCKER_ANNOTATIONS = "appc.io/docker/"

#: Annotation holding the Docker ``Cmd`` as a JSON array string.
CMD_ANNOTATION = "appc.io/docker/cmd"

_AC_NAME_JUNK = re.compile(r"[^a-z0-9]+")

#: Returns ``(uid, gid)`` of the file at an absolute path inside the image.
OwnerLookup = Callable[[str], tuple[int, int]]


@dataclass(frozen=True)
class ProcessSpec:
    """Everything needed to start the app process.

    Attributes:
        argv: the command line; ``argv[0]`` is an absolute path, a path relative to
            ``cwd`` (contains ``/``) or a bare name looked up in ``env["PATH"]``.
        env: the complete environment (read-only mapping).
        cwd: absolute working directory inside the image.
        uid: numeric user id.
        gid: numeric primary group id.
        supplementary_gids: extra group ids (``app.supplementaryGIDs``).
    """

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    uid: int
    gid: int
    supplementary_gids: tuple[int, ...] = ()

    @property
    def groups(self) -> tuple[int, ...]:
        """The process's group list (``setgroups``): the primary group, then
        :attr:`supplementary_gids`, each group once, in that order (``supplementaryGIDs``
        may repeat the primary group; the kernel would list it twice, as ``id`` shows)."""
        return tuple(dict.fromkeys((self.gid, *self.supplementary_gids)))


@dataclass(frozen=True)
class Account:
    """One line of an ``/etc/passwd`` or ``/etc/group`` file.

    Attributes:
        name: the user or group name.
        id: the numeric uid or gid.
        home: the home directory (``passwd`` only; empty for groups).
    """

    name: str
    id: int
    home: str = ""


def parse_passwd(text: str) -> tuple[Account, ...]:
    """Parse ``/etc/passwd`` text (``name:password:uid:gid:gecos:home:shell``).

    Args:
        text: the file's contents; malformed lines and comments are skipped.

    Returns:
        The accounts in file order.
    """
    return tuple(
        Account(fields[0], int(fields[2]), fields[5])
        for fields in _records(text, min_fields=7, id_field=2)
    )


def parse_group(text: str) -> tuple[Account, ...]:
    """Parse ``/etc/group`` text (``name:password:gid:members``).

    Args:
        text: the file's contents; malformed lines and comments are skipped.

    Returns:
        The groups in file order.
    """
    return tuple(
        Account(fields[0], int(fields[2])) for fields in _records(text, min_fields=3, id_field=2)
    )


def _records(text: str, *, min_fields: int, id_field: int) -> list[list[str]]:
    records = []
    for line in text.splitlines():
        fields = line.split(":")
        if line.startswith("#") or len(fields) < min_fields or not fields[0]:
            continue
        if plain_decimal(fields[id_field], 10) is None:
            continue  # not a 32-bit id
        records.append(fields)
    return records


def resolve_id(
    value: str | int | None,
    *,
    kind: str,
    accounts: Sequence[Account],
    owner_of: OwnerLookup | None = None,
) -> int:
    """Resolve an appc ``user`` or ``group`` value to a numeric id.

    Order (appc ``spec/types.md``; appc/spec PR #315): empty → 0; an absolute path →
    the owner (or group) of that file in the image; a name in the image's file; a
    decimal number; ``root`` → 0 even without a file (rkt #2411).

    Args:
        value: the manifest's string (an int is accepted as already numeric).
        kind: ``"user"`` or ``"group"``, for the lookup file and messages.
        accounts: the image's ``/etc/passwd`` (users) or ``/etc/group`` (groups).
        owner_of: gives ``(uid, gid)`` of a file in the image, for path values.

    Returns:
        The id, between 0 and 2**32 - 2.

    Raises:
        RunnerError: the name is unknown, the number is out of range, or a path value
            cannot be looked up.
    """
    file = "/etc/passwd" if kind == "user" else "/etc/group"
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif not isinstance(value, str):
        raise RunnerError(f"manifest field app.{kind} is not a string")
    elif value.startswith("/"):
        if owner_of is None:
            raise RunnerError(f"{kind} {value!r}: no image tree to look the file up in")
        return owner_of(value)[0 if kind == "user" else 1]
    elif (match := next((a for a in accounts if a.name == value), None)) is not None:
        if not 0 <= match.id <= MAX_OWNER_ID:
            raise RunnerError(f"{kind} {value!r} has the id {match.id} in the image's {file}, "
                              f"out of range (0-{MAX_OWNER_ID})")
        return match.id
    elif value.isascii() and value.isdigit():
        number = int(value) if len(value) <= 10 else MAX_OWNER_ID + 1  # out of range, said below
    elif value == "root":
        return 0
    else:
        raise RunnerError(f"{kind} {value!r} is not in the image's {file}")
    if not 0 <= number <= MAX_OWNER_ID:
        raise RunnerError(f"{kind} {value!r} is out of range")
    return number


def build_process_spec(
    manifest: Mapping[str, Any],
    args: Sequence[str] | None = None,
    *,
    exec_override: Sequence[str] | None = None,
    passwd_text: str | None = None,
    group_text: str | None = None,
    owner_of: OwnerLookup | None = None,
    set_env: Mapping[str, str] | None = None,
) -> ProcessSpec:
    """Compute the app's process from its image manifest and the run options.

    The command line: ``exec_override`` + ``args`` when an override is given; else, when
    ``args`` are given, they replace Docker's Cmd: the ``appc.io/docker/entrypoint``
    annotation + ``args`` (just ``args`` without that annotation, or when it is ``[""]``,
    Docker's reset), or, in an ACI with no ``appc.io/docker/`` annotation (not converted
    from a Docker image), ``app.exec`` + ``args``, as rkt runs it (``stage0`` appends them
    to the exec); else ``app.exec``.

    The environment: ``app.environment`` (a later duplicate wins), then, each only when
    absent, rkt's stage1 defaults: ``PATH`` (:data:`DEFAULT_PATH`), ``HOME`` (the user's
    home in the image's passwd, else ``/``), ``SHELL`` (:data:`DEFAULT_SHELL`), ``USER`` and
    ``LOGNAME`` (the user's name in the image's passwd; :data:`ROOT_NAME` for uid 0 without
    an entry; left unset for another uid without one: there is no name to give; rkt says
    ``root`` whoever the user is, rkt #2569), and ``container`` (:data:`CONTAINER_VALUE`);
    then ``set_env`` (``--set-env``: it replaces or adds variables,
    the defaults included), and ``AC_APP_NAME`` (the last component of the
    image name). ``AC_APP_NAME`` belongs to the executor (appc ``spec/ace.md``): a
    ``set_env`` value for it is ignored with a warning. The stage adds ``HOSTNAME``
    (:func:`with_hostname`).

    Args:
        manifest: the parsed appc image manifest.
        args: the words after ``--`` on the command line.
        exec_override: a replacement for the whole exec (``--exec``).
        passwd_text: the image's ``/etc/passwd``, or ``None`` when it has none.
        group_text: the image's ``/etc/group``, or ``None`` when it has none.
        owner_of: gives ``(uid, gid)`` of a file in the image (path-form user/group).
        set_env: variables that override or add to the image's environment, in order
            (:func:`parse_set_env` parses ``NAME=VALUE``).

    Returns:
        The process specification.

    Raises:
        RunnerError: the manifest is malformed, the image has no exec and neither
            ``args`` nor ``exec_override`` is given (public case 42), a user or group
            name is not in the image's files, or a ``set_env`` name is empty or holds
            ``=`` or NUL (or its value NUL).
    """
    app = manifest.get("app") or {}
    if not isinstance(app, Mapping):
        raise RunnerError("manifest field app is not an object")
    image = str(manifest.get("name", "the image"))
    argv = _argv(image, app, _annotations(manifest), args, exec_override)
    users = parse_passwd(passwd_text or "")
    uid = resolve_id(app.get("user"), kind="user", accounts=users, owner_of=owner_of)
    gid = resolve_id(
        app.get("group"), kind="group", accounts=parse_group(group_text or ""), owner_of=owner_of
    )
    home = next((user.home for user in users if user.id == uid and user.home), "/")
    name = next((user.name for user in users if user.id == uid), ROOT_NAME if uid == 0 else None)
    env = _environment(app.get("environment"))
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOME", home)
    env.setdefault("SHELL", DEFAULT_SHELL)
    if name is not None and "\0" not in name:  # a NUL cannot pass execve
        env.setdefault("USER", name)
        env.setdefault("LOGNAME", name)
    env.setdefault("container", CONTAINER_VALUE)
    for name, value in (set_env or {}).items():
        _check_variable(name, value, f"--set-env {f'{name}={value}'!r}")
        if name == "AC_APP_NAME":
            logger.warning("--set-env AC_APP_NAME ignored: the executor sets AC_APP_NAME")
            continue
        env[name] = value
    env["AC_APP_NAME"] = app_name(image)
    return ProcessSpec(
        argv=argv,
        env=MappingProxyType(env),
        cwd=_working_directory(app.get("workingDirectory")),
        uid=uid,
        gid=gid,
        supplementary_gids=_supplementary_gids(app.get("supplementaryGIDs")),
    )


def with_hostname(spec: ProcessSpec, hostname: str) -> ProcessSpec:
    """The process with ``HOSTNAME`` set to the app's host name, as Docker sets it
    (moby ``container.CreateDaemonEnvironment``), unless its environment has one: the
    image's (``app.environment``, Docker's ``ENV HOSTNAME``) or ``--set-env``'s wins, as
    ``docker run -e`` does. rkt sets none (its stage1 adds only ``AC_APP_NAME`` and
    ``AC_METADATA_URL``); an image converted from Docker expects it. The stages call this
    with the host name the app sees: the isolated stage's (``--hostname``, or the
    container's id), the host's in the fly stage.

    Args:
        spec: the process (:func:`build_process_spec`).
        hostname: the app's host name.

    Returns:
        ``spec``, or a copy whose environment ends with ``HOSTNAME``.
    """
    if "HOSTNAME" in spec.env:
        return spec
    return dataclasses.replace(spec, env=MappingProxyType({**spec.env, "HOSTNAME": hostname}))


def parse_set_env(text: str) -> tuple[str, str]:
    """Parse a ``--set-env`` option (rkt's syntax).

    Args:
        text: ``NAME=VALUE``; the name ends at the first ``=``, the value may be empty
            and may hold ``=`` (``OPTS=a=b`` sets ``OPTS`` to ``a=b``).

    Returns:
        ``(name, value)``.

    Raises:
        RunnerError: the text has no ``=``, the name is empty, or the text holds a NUL
            character (the message quotes ``text``).
    """
    if not isinstance(text, str):
        raise RunnerError(f"--set-env {text!r}: not a string")
    name, equals, value = text.partition("=")
    if not equals:
        raise RunnerError(f"--set-env {text!r}: write NAME=VALUE")
    _check_variable(name, value, f"--set-env {text!r}")
    return name, value


#: Characters a backslash escapes inside double quotes (POSIX, Shell Command Language,
#: 2.2.3 "Double-Quotes"); before any other it stays: ``"a\b"`` is ``a\b``.
_ESCAPED_IN_DOUBLE_QUOTES = "$`\"\\\n"


def split_exec(text: str) -> tuple[str, ...]:
    """Split an ``--exec`` value into words as a POSIX shell would, without expansions.

    POSIX Shell Command Language, 2.2 "Quoting" and 2.3 "Token Recognition": unquoted
    blanks (space, tab, newline) separate words; a backslash outside quotes keeps the next
    character as it is, and removes a newline (a line continuation); single quotes keep
    everything up to the next single quote; inside double quotes a backslash escapes
    only ``$``, a backquote, ``"``, ``\\`` and a newline (removed), and stays before any other
    character. ``''`` and ``""`` are empty words. Nothing is expanded (``$HOME``, ``*``
    and ``~`` stay as they are) and no character is an operator or starts a comment.
    (Python's ``shlex.split`` kept the backslash of ``"\\$"`` and of a backquote, and a
    continuation's newline.)

    Args:
        text: the option's value.

    Returns:
        The words.

    Raises:
        RunnerError: a quotation is not closed, or the text ends in an unquoted
            backslash (the message quotes ``text``).
    """
    words: list[str] = []
    word: list[str] | None = None  # None: between words
    i = 0
    while i < len(text):
        char = text[i]
        i += 1
        if char in " \t\n":
            if word is not None:
                words.append("".join(word))
                word = None
            continue
        if char == "\\" and text[i:i + 1] == "\n":
            # A line continuation is removed before words are told apart: between words
            # it starts no word (``a \<newline>`` is the one word ``a``, as in dash; it
            # made an empty word), inside one it joins the parts (``ab\<newline>cd``).
            i += 1
            continue
        if word is None:
            word = []
        if char == "\\":
            if i == len(text):
                raise RunnerError(f"--exec {text!r}: No escaped character")
            word.append(text[i])
            i += 1
        elif char == "'":
            end = text.find("'", i)
            if end < 0:
                raise RunnerError(f"--exec {text!r}: No closing quotation")
            word.append(text[i:end])
            i = end + 1
        elif char == '"':
            while True:
                if i == len(text):
                    raise RunnerError(f"--exec {text!r}: No closing quotation")
                char = text[i]
                i += 1
                if char == '"':
                    break
                if char == "\\" and i < len(text) and text[i] in _ESCAPED_IN_DOUBLE_QUOTES:
                    if text[i] != "\n":
                        word.append(text[i])
                    i += 1
                else:
                    word.append(char)
        else:
            word.append(char)
    if word is not None:
        words.append("".join(word))
    return tuple(words)


def _check_variable(name: object, value: object, what: str) -> None:
    """Refuse an environment variable that ``execve`` could not pass on as written."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise RunnerError(f"{what}: the name and the value must be strings")
    if not name:
        raise RunnerError(f"{what}: the variable name is empty")
    if "=" in name:
        raise RunnerError(f"{what}: the variable name {name!r} holds '='")
    if "\0" in name or "\0" in value:
        raise RunnerError(f"{what}: NUL characters cannot be passed in the environment")


def app_name(image_name: str) -> str:
    """Derive rkt's default app name (an AC name) from an image name.

    Args:
        image_name: the manifest's ``name`` (``example.com/test/busybox``).

    Returns:
        The last path component, lower-cased, runs of other characters turned into
        ``-`` (``busybox``); ``app`` if nothing is left.
    """
    base = image_name.rstrip("/").rsplit("/", 1)[-1].lower()
    return _AC_NAME_JUNK.sub("-", base).strip("-") or "app"


def _annotations(manifest: Mapping[str, Any]) -> dict[str, str]:
    annotations = manifest.get("annotations") or []
    if not isinstance(annotations, list):
        raise RunnerError("manifest field annotations is not a list")
    return {
        item["name"]: item["value"]
        for item in annotations
        if isinstance(item, Mapping)
        and isinstance(item.get("name"), str)
        and isinstance(item.get("value"), str)
    }


def _string_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        raise RunnerError(f"{what} is not a list of strings")
    return list(value)


def _argv(
    image: str,
    app: Mapping[str, Any],
    annotations: Mapping[str, str],
    args: Sequence[str] | None,
    exec_override: Sequence[str] | None,
) -> tuple[str, ...]:
    if exec_override:
        argv = [*exec_override, *(args or ())]
    elif args and not any(name.startswith(DOCKER_ANNOTATIONS) for name in annotations):
        # an ACI not converted from a Docker image: rkt's rule, the args follow the whole exec
        argv = [*_string_list(app.get("exec") or [], "manifest field app.exec"), *args]
    elif args:
        entrypoint: list[str] = []
        if ENTRYPOINT_ANNOTATION in annotations:
            try:
                parsed = untrustedjson.loads(annotations[ENTRYPOINT_ANNOTATION])
            except untrustedjson.BadJSON as err:
                raise RunnerError(f"annotation {ENTRYPOINT_ANNOTATION} is not JSON: {err}") from err
            entrypoint = _string_list(parsed or [], f"annotation {ENTRYPOINT_ANNOTATION}")
        if entrypoint == [""]:  # ENTRYPOINT [""] resets it, as moby's mergeAndVerifyConfig does
            entrypoint = []
        argv = [*entrypoint, *args]
    else:
        argv = _string_list(app.get("exec") or [], "manifest field app.exec")
    if not argv:
        raise RunnerError(
            f"{image} has no exec (no Entrypoint or Cmd): use --exec to choose the program to run"
        )
    if not argv[0]:
        raise RunnerError("the executable name is empty")
    for i, word in enumerate(argv):
        if "\0" in word:  # execve ends an argument there: fly said "embedded null byte", isolated EINVAL
            raise RunnerError(f"argument {i} of the command line ({word!r}) holds a NUL character, "
                              "which cannot be passed to a program")
    return tuple(argv)


def _environment(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise RunnerError("manifest field app.environment is not a list")
    env: dict[str, str] = {}
    for item in value:
        if not isinstance(item, Mapping) or not all(
            isinstance(item.get(key), str) for key in ("name", "value")
        ):
            raise RunnerError(f"manifest field app.environment has a malformed entry: {item!r}")
        _check_variable(item["name"], item["value"], f"manifest field app.environment, variable {item['name']!r}")
        env[item["name"]] = item["value"]
    return env


def _working_directory(value: object) -> str:
    if value is None or value == "":
        return "/"
    if not isinstance(value, str):
        raise RunnerError("manifest field app.workingDirectory is not a string")
    if not value.startswith("/"):
        logger.warning("relative workingDirectory %r taken from /", value)
        return "/" + value
    return value


def _supplementary_gids(value: object) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(gid, int) and not isinstance(gid, bool) and 0 <= gid <= MAX_OWNER_ID for gid in value
    ):
        raise RunnerError("manifest field app.supplementaryGIDs is not a list of group ids")
    return tuple(value)
