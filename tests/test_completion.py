"""``docker2aci completion bash|zsh|fish``: the scripts complete in the real shells.

bash: the script is sourced and its completion function called as bash calls it (COMP_WORDS
split at COMP_WORDBREAKS, COMP_CWORD, COMP_LINE), and a few lines are typed into an
interactive bash on a pseudo-terminal (readline's own word splitting). zsh: an interactive
``zsh -f`` on a pseudo-terminal with ``compinit``, TAB bound to ``complete-word`` and
``compadd`` wrapped to record the matches. fish: ``complete -C LINE``. Each case lists
exactly what the line before the cursor completes to, in a directory of known files. A test
skips only when its shell is not installed (``scripts/setup.sh`` installs them).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import shlex
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from docker2aci import cli
from docker2aci.completion import SHELLS, command_tree, render

FILES = {"image.tar", "busybox.aci", "secret.asc", "out", "cache"}
DIRS = {"out", "cache"}
COMPRESSIONS = {"gzip", "none", "xz", "bzip2"}

#: (the command line up to the cursor, exactly what completes there)
CASES: list[tuple[str, set[str]]] = [
    ("docker2aci con", {"convert"}),
    ("docker2aci co", {"convert", "completion"}),
    ("docker2aci ", set(cli.PARSERS)),  # every command of the registry, nothing else
    ("docker2aci ima", {"image.tar"}),  # no command starts so: docker2aci IMAGE
    ("docker2aci --no", {"--nosquash", "--no-cache"}),  # docker2aci FLAGS IMAGE is convert
    ("docker2aci --ver", {"--version"}),
    ("docker2aci --debug --ver", set()),  # --version only comes first
    ("docker2aci --debug ", FILES),
    ("docker2aci --debug con", set()),  # a command only comes first
    ("docker2aci convert --compression ", COMPRESSIONS),
    ("docker2aci convert --compression=x", {"xz"}),
    ("docker2aci -compression ", COMPRESSIONS),  # Go-style spelling, at the top level
    ("docker2aci convert --output-dir ", DIRS),
    ("docker2aci convert --output-dir=o", {"out"}),
    ("docker2aci convert --sign ", FILES),
    ("docker2aci convert --image ", set()),  # IMAGE_NAME[:TAG]: nothing to offer
    ("docker2aci -image busybox:latest ima", {"image.tar"}),
    ("docker2aci --creds=user:pass --compression-", {"--compression-level"}),
    ("docker2aci convert image.tar ", set()),  # one IMAGE only
    ("docker2aci run --st", {"--stage"}),
    ("docker2aci run --stage ", {"fly", "isolated"}),
    ("docker2aci run -net ", {"none", "host"}),
    ("docker2aci run busybox.aci -- ", FILES),  # the app's arguments
    ("docker2aci fetch --trust-dir c", {"cache"}),
    ("docker2aci gc --g", {"--grace"}),
    ("docker2aci gc ", set()),
    ("docker2aci validate busybox.aci ", FILES),
    ("docker2aci inspect --j", {"--json"}),
    ("docker2aci render busybox.aci ", DIRS),
    ("docker2aci render busybox.aci out ", set()),
    ("docker2aci keys ", {"generate", "import", "export", "list"}),
    ("docker2aci keys gen", {"generate"}),
    ("docker2aci keys generate --al", {"--algorithm"}),
    ("docker2aci keys generate --algorithm ", {"rsa2048", "rsa3072", "rsa4096", "ed25519"}),
    ("docker2aci keys generate --passphrase-file s", {"secret.asc"}),
    ("docker2aci keys import ", FILES),
    ("docker2aci keys list --", {"--help", "--keys-dir"}),
    ("docker2aci keys list ", set()),
    ("docker2aci sign --passphrase-file s", {"secret.asc"}),
    ("docker2aci sign --", {"--help", "--key", "--gpg-key", "--passphrase-file", "--sign-passphrase-file"}),
    ("docker2aci verify --trust-dir ", DIRS),
    ("docker2aci trust ", {"add", "list", "remove"}),
    ("docker2aci trust add --", {"--help", "--prefix", "--root", "--yes", "--trust-dir"}),
    ("docker2aci trust add --prefix ", set()),
    # the path after a transport that names a file or a directory (new-user trial: nothing completed)
    ("docker2aci oci-archive:ima", {"image.tar"}),
    ("docker2aci --debug docker-archive:", FILES),
    ("docker2aci run docker-archive:b", {"busybox.aci"}),
    ("docker2aci fetch oci:", DIRS),
    ("docker2aci docker://ima", set()),
    ("docker2aci completion ", {"bash", "zsh", "fish"}),
    ("docker2aci completion bash ", set()),
]
CASE_IDS = [line.strip() or "empty" for line, _ in CASES]


def _needs(shell: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(shell) is None,
                              reason=f"{shell} is not installed (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each shell's script, as ``docker2aci completion SHELL`` prints it."""
    out = tmp_path_factory.mktemp("completion")
    paths = {}
    for shell in SHELLS:
        result = subprocess.run([sys.executable, "-m", "docker2aci", "completion", shell],
                                capture_output=True, text=True, check=True)
        paths[shell] = out / f"docker2aci.{shell}"
        paths[shell].write_text(result.stdout)
    return paths


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the shells complete in: the files of :data:`FILES`."""
    path = tmp_path_factory.mktemp("cwd")
    for name in FILES - DIRS:
        (path / name).write_text("")
    for name in DIRS:
        (path / name).mkdir()
    return path


def _env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TERM": "xterm",
            "LC_ALL": "C.UTF-8", "INPUTRC": "/dev/null"}


# ---------------------------------------------------------------------------- bash

def _bash_words(line: str) -> list[str]:
    """COMP_WORDS as bash splits ``line``: at blanks, and around runs of ``=`` and ``:``
    (COMP_WORDBREAKS)."""
    words: list[str] = []
    for token in line.split(" "):
        words.extend(re.findall(r"[=:]+|[^=:]+", token) or [""])
    return words


@pytest.fixture(scope="module")
def bash_results(scripts: dict[str, Path], workdir: Path) -> dict[str, list[str]]:
    """COMPREPLY of every case, from the function ``complete -p docker2aci`` names."""
    program = [f"source {shlex.quote(str(scripts['bash']))}",
               "spec=$(complete -p docker2aci) || exit 3", "fn=${spec#*-F }", "fn=${fn%% *}"]
    for line, _ in CASES:
        words = _bash_words(line)
        program += [f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})", f"COMP_CWORD={len(words) - 1}",
                    f"COMP_LINE={shlex.quote(line)}", "COMP_POINT=${#COMP_LINE}", "COMPREPLY=()",
                    '"$fn" docker2aci "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"',
                    "printf '%s\\n' \"${COMPREPLY[@]}\"", "echo '@@end'"]
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", "\n".join(program)], cwd=workdir,
                            env=_env(workdir), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split("@@end\n")
    assert len(outputs) == len(CASES) + 1, result.stdout
    return {line: [item for item in out.split("\n") if item] for (line, _), out in zip(CASES, outputs)}


@_needs("bash")
@pytest.mark.parametrize(("line", "expected"), CASES, ids=CASE_IDS)
def test_bash(bash_results: dict[str, list[str]], line: str, expected: set[str]) -> None:
    assert sorted(bash_results[line]) == sorted(expected)


# ---------------------------------------------------------------------------- fish

@pytest.fixture(scope="module")
def fish_results(scripts: dict[str, Path], workdir: Path) -> dict[str, list[str]]:
    """What ``complete -C LINE`` lists for every case (the candidates, not their descriptions)."""
    lines = workdir.parent / "fish-lines"
    lines.write_text("".join(f"{line}\n" for line, _ in CASES))
    program = (f"source {shlex.quote(str(scripts['fish']))}\n"
               f"while read -l line\n    complete -C \"$line\"\n    echo @@end\nend < {shlex.quote(str(lines))}")
    result = subprocess.run(["fish", "--no-config", "-c", program], cwd=workdir, env=_env(workdir),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and not result.stderr, result.stderr
    outputs = result.stdout.split("@@end\n")
    assert len(outputs) == len(CASES) + 1, result.stdout
    results = {}
    for (line, _), out in zip(CASES, outputs):
        token = line.split(" ")[-1]
        given = token.split("=", 1)[0] + "=" if token.startswith("-") and "=" in token else \
            token.split(":", 1)[0] + ":" if token.startswith(("docker-archive:", "oci-archive:", "oci:")) else ""
        items = [item.split("\t", 1)[0] for item in out.split("\n") if item]
        results[line] = [item.removeprefix(given).rstrip("/") for item in items]
    return results


@_needs("fish")
@pytest.mark.parametrize(("line", "expected"), CASES, ids=CASE_IDS)
def test_fish(fish_results: dict[str, list[str]], line: str, expected: set[str]) -> None:
    assert sorted(fish_results[line]) == sorted(expected)


@_needs("fish")
def test_fish_autoloaded(scripts: dict[str, Path], workdir: Path) -> None:
    """Installed as README.md says, in ~/.config/fish/completions: fish loads it itself (for
    a docker2aci on PATH)."""
    home = workdir.parent / "fish-home"
    (home / ".config" / "fish" / "completions").mkdir(parents=True, exist_ok=True)
    shutil.copy(scripts["fish"], home / ".config" / "fish" / "completions" / "docker2aci.fish")
    (home / "bin").mkdir(exist_ok=True)
    (home / "bin" / "docker2aci").write_text("#!/bin/sh\n")
    (home / "bin" / "docker2aci").chmod(0o755)
    env = _env(home) | {"PATH": f"{home / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    result = subprocess.run(["fish", "-c", "complete -C 'docker2aci keys ge'"], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["generate"]


# ---------------------------------------------------------------------------- a terminal

class Terminal:
    """An interactive shell on a pseudo-terminal; what it prints is kept, never parsed:
    the shell writes what the tests read into files."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 300, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.transcript = b""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, path: Path, end: str, timeout: float = 30) -> str:
        """The text of ``path`` once it ends with ``end``, reading the terminal meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.transcript += os.read(self.master, 65536)
                except OSError:  # the shell has exited
                    break
            if path.exists() and path.read_text().endswith(end):
                return path.read_text()
        tail = self.transcript.decode(errors="replace")[-3000:]
        raise AssertionError(f"the shell did not write {end!r} to {path}; its terminal showed:\n{tail}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


# ---------------------------------------------------------------------------- zsh

def _zsh_session(script: Path, workdir: Path, lines: list[str], *, fpath: bool) -> dict[str, set[str]]:
    """The matches zsh's completion system adds for each line (TAB, then the line is
    cleared), with the script sourced after ``compinit`` or autoloaded from ``fpath``.
    Typing ahead is safe: the terminal holds the keys until zle reads them."""
    home = workdir.parent / ("zsh-fpath" if fpath else "zsh-sourced")
    home.mkdir(exist_ok=True)
    hits = home / "hits"
    hits.unlink(missing_ok=True)
    if fpath:
        (home / "functions").mkdir(exist_ok=True)
        shutil.copy(script, home / "functions" / "_docker2aci")
        install = [f"fpath=({home / 'functions'} $fpath)", "autoload -Uz compinit", "compinit -u -D"]
    else:
        install = ["autoload -Uz compinit", "compinit -u -D", f"source {script}"]
    record = ("compadd() { if (( ${@[(I)-[OAD]]} )); then builtin compadd \"$@\"; return; fi; "
              f"local -a h; builtin compadd -O h \"$@\"; (( $#h )) && print -rl -- $h >> {hits}; "
              "builtin compadd \"$@\"; }")
    # ^G clears the line: ^U would be the terminal's own kill character while zle is not reading
    setup = ["unsetopt autolist automenu listbeep", *install, record, "bindkey '^I' complete-word",
             "bindkey '^G' kill-whole-line", f"print @@ready > {hits}"]
    terminal = Terminal(["zsh", "-f", "-i"], workdir, _env(home))
    results = {}
    try:
        terminal.type("; ".join(setup) + "\n")
        terminal.wait_for(hits, "@@ready\n")
        for line in lines:
            hits.write_text("")
            terminal.type(f"{line}\t\x07print @@end >> {hits}\n")
            text = terminal.wait_for(hits, "@@end\n")
            results[line] = set(text.split("\n")) - {"@@end", ""}
    finally:
        terminal.close()
    return results


@pytest.fixture(scope="module")
def zsh_results(scripts: dict[str, Path], workdir: Path) -> dict[str, set[str]]:
    return _zsh_session(scripts["zsh"], workdir, [line for line, _ in CASES], fpath=False)


@_needs("zsh")
def test_zsh_syntax(scripts: dict[str, Path]) -> None:
    result = subprocess.run(["zsh", "-n", str(scripts["zsh"])], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@_needs("zsh")
@pytest.mark.parametrize(("line", "expected"), CASES, ids=CASE_IDS)
def test_zsh(zsh_results: dict[str, set[str]], line: str, expected: set[str]) -> None:
    assert zsh_results[line] == expected


@_needs("zsh")
def test_zsh_autoloaded_from_fpath(scripts: dict[str, Path], workdir: Path) -> None:
    """Installed as ``_docker2aci`` in a directory of ``fpath`` (the ``#compdef`` line)."""
    results = _zsh_session(scripts["zsh"], workdir, ["docker2aci con", "docker2aci keys "], fpath=True)
    assert results == {"docker2aci con": {"convert"}, "docker2aci keys ": {"generate", "import", "export", "list"}}


# ---------------------------------------------------------------------------- bash's readline

@_needs("bash")
def test_bash_readline(scripts: dict[str, Path], workdir: Path) -> None:
    """Typed into an interactive bash: readline splits the words (``=`` and ``:`` are word
    breaks) and inserts the one completion; a shell function named docker2aci records the
    arguments of the line that runs."""
    home = workdir.parent / "bash-readline"
    home.mkdir(exist_ok=True)
    args = home / "args"
    args.unlink(missing_ok=True)
    setup = [f"source {scripts['bash']}", f"docker2aci() {{ printf '%s\\n' \"$@\" @@end > {args}; }}",
             f"echo @@ready > {args}"]
    typed = {"docker2aci con\t--compression=x\timage.tar\n": ["convert", "--compression=xz", "image.tar"],
             "docker2aci -image busybox:latest ima\t\n": ["-image", "busybox:latest", "image.tar"],
             "docker2aci keys gen\t--al\ted\t\n": ["keys", "generate", "--algorithm", "ed25519"],
             "docker2aci render busybox.aci o\t\n": ["render", "busybox.aci", "out/"]}
    terminal = Terminal(["bash", "--norc", "--noprofile", "-i"], workdir, _env(home))
    try:
        terminal.type("; ".join(setup) + "\n")
        terminal.wait_for(args, "@@ready\n")
        for keys, expected in typed.items():
            args.write_text("")
            terminal.type(keys)
            assert terminal.wait_for(args, "@@end\n").split("\n")[:-2] == expected, keys
    finally:
        terminal.close()


# ---------------------------------------------------------------------------- the command and the registry

@pytest.mark.parametrize("shell", SHELLS)
def test_every_command_in_every_script(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A command added to the registry is in every script, as are its options."""
    assert cli.main(["completion", shell]) == 0
    script = capsys.readouterr().out
    tree = command_tree({name: factory("docker2aci") for name, factory in cli.PARSERS.items()})
    assert [child.name for child in tree.children] == list(cli.PARSERS)
    for node in tree.walk()[1:]:
        assert re.search(rf"(?<![\w-]){re.escape(node.name)}(?![\w-])", script), f"{node.ident} missing"
        for option in node.options:
            for spelling in option.offered:
                assert spelling.lstrip("-") in script, f"{node.ident} {spelling} missing"


def test_registry_covers_the_commands() -> None:
    assert set(cli.PARSERS) == set(cli._COMMANDS)
    assert {"convert", "run", "fetch", "gc", "validate", "inspect", "render", "keys", "sign", "verify", "trust",
            "completion"} <= set(cli.PARSERS)
    for name, factory in cli.PARSERS.items():
        assert factory("docker2aci").prog == ("docker2aci" if name == "convert" else f"docker2aci {name}")


def test_new_command_needs_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A command of another module, registered by :func:`cli._lazy_command`, completes."""
    monkeypatch.setitem(cli.PARSERS, "signer", cli._lazy_command("cli_signing", "sign").parser)
    assert cli.main(["completion", "bash"]) == 0
    assert "root:signer) child=signer;;" in capsys.readouterr().out


def test_unknown_shell(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", "tcsh"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tcsh'" in err and all(shell in err for shell in SHELLS)
    with pytest.raises(ValueError, match="unknown shell 'tcsh'"):
        render("tcsh", "docker2aci", {})


def test_import_cli_stays_light() -> None:
    """``import docker2aci.cli`` loads neither the signing commands nor the completion
    generator nor their libraries: they load when a command needs them."""
    code = ("import sys, docker2aci.cli\n"
            "print(' '.join(m for m in ('docker2aci.cli_signing', 'docker2aci.completion', 'docker2aci.signing',"
            " 'pysequoia', 'requests') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_what_completes_a_value() -> None:
    """Metavars with the word DIR complete directories, FILE or PATH files, others nothing;
    positional arguments files; the ``complete`` attribute overrides."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", metavar="CACHE_DIR")
    parser.add_argument("--report", metavar="FILE.json")
    parser.add_argument("--key", metavar="KEYFILE")
    parser.add_argument("--name", metavar="DIRECTORY_NAME")
    parser.add_argument("--level", type=int)
    parser.add_argument("--mode", choices=["a", "b"])
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("source")
    parser.add_argument("repo", metavar="HOST/REPO").complete = "none"  # type: ignore[attr-defined]
    parser.add_argument("rest", nargs="*", metavar="DIR")
    node = command_tree({"x": parser}).children[0]
    assert {o.offered[0]: o.value.kind for o in node.options} == {
        "--help": "flag", "--cache": "dir", "--report": "file", "--key": "file", "--name": "word", "--level": "word",
        "--mode": "choice", "--quiet": "flag"}
    assert [v.kind for v in node.positionals] == ["file", "word", "dir"] and node.repeat_last
    parser.add_argument("--odd").complete = "files"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="complete='files'"):
        command_tree({"x": parser})


def test_words_that_cannot_go_into_a_script() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["a b"])
    with pytest.raises(ValueError, match="cannot go into a completion script"):
        render("bash", "docker2aci", {"odd": parser})
    with pytest.raises(ValueError, match="cannot go into a completion script"):
        render("zsh", "docker2aci", {"a:b": argparse.ArgumentParser()})
    with pytest.raises(ValueError, match="default command"):
        command_tree({}, default="convert")
