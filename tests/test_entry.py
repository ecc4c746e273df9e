"""The process entry point (``docker2aci`` script, ``python -m docker2aci``): the status
of :func:`docker2aci.cli.main` becomes the exit status, output through a pipe arrives
whole, and the cyclic collector is frozen before the interpreter's teardown."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docker2aci import __version__, cli

import hostilebuild as hb

BASE = hb.tar([hb.dir_("etc"), hb.file("etc/passwd", hb.PASSWD), hb.file("hello", b"hi\n")])


def test_entry_exits_with_mains_status_after_freezing(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen: list[bool] = []
    monkeypatch.setattr(cli, "main", lambda: 3)
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    with pytest.raises(SystemExit) as raised:
        cli.entry()
    assert raised.value.code == 3 and frozen == [True]


@pytest.mark.parametrize("how", ["module", "script"])
def test_the_command_line_status_and_piped_output(tmp_path: Path, how: str) -> None:
    command = ([sys.executable, "-m", "docker2aci"] if how == "module"
               else [str(Path(sys.executable).with_name("docker2aci"))])
    if not Path(command[0]).exists():
        pytest.skip("the console script is not installed beside this interpreter")
    archive = tmp_path / "a.tar"
    archive.write_bytes(hb.docker_save([BASE], config=hb.image_config([BASE])))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([*command, "--json", "--output-dir", str(tmp_path / "out"), f"docker-archive:{archive}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    converted = json.loads(done.stdout)  # one JSON line per ACI
    assert converted["name"] == "test/hostile" and Path(converted["path"]).is_file()
    failed = subprocess.run([*command, str(tmp_path / "missing.tar")], capture_output=True, text=True, env=env)
    assert failed.returncode == 1
    assert "missing.tar" in failed.stderr


_CTRL_C_ON_IMPORT = """
import signal
import sys


class CtrlCOnImport:
    \"\"\"A real Ctrl-C (SIGINT, handled at once by raise_signal) as docker2aci.cli starts loading.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "docker2aci.cli":
            signal.raise_signal(signal.SIGINT)
        return None


sys.meta_path.insert(0, CtrlCOnImport())
"""


@pytest.mark.parametrize("how", ["module", "script"])
def test_ctrl_c_while_the_command_loads(tmp_path: Path, how: str) -> None:
    """A Ctrl-C in the first tenth of a second, while ``docker2aci.cli`` was imported,
    printed a KeyboardInterrupt traceback (exit 1); a moment later it printed one line and
    exited 130: now it does the same from the start (CLI review)."""
    command = ([sys.executable, "-m", "docker2aci"] if how == "module"
               else [str(Path(sys.executable).with_name("docker2aci"))])
    if not Path(command[0]).exists():
        pytest.skip("the console script is not installed beside this interpreter")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_CTRL_C_ON_IMPORT)  # imported by the interpreter at start-up
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(hook)})
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "Interrupted (SIGINT)\n")


@pytest.mark.parametrize("argv, source, error", [
    (["--json", "{tmp}/missing.tar"], "{tmp}/missing.tar", "{tmp}/missing.tar: no such file or directory"),
    (["fetch", "--json", "--cache-dir", "{tmp}/cache", "docker-archive:{tmp}/missing.tar"],
     "docker-archive:{tmp}/missing.tar", "docker-archive:{tmp}/missing.tar: no such file or directory"),
    (["inspect", "--json", "{tmp}/missing.aci"], "{tmp}/missing.aci",
     "{tmp}/missing.aci: No such file or directory"),
    (["gc", "--json", "--cache-dir", "/etc/passwd"], "/etc/passwd",  # the cache directory is named as the source
     "tree store /etc/passwd: cannot examine /etc/passwd/trees: Not a directory"),
])
def test_a_failure_with_json_prints_a_json_entry(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 argv: list[str], source: str, error: str) -> None:
    """``--json`` printed nothing on stdout when the command failed (a script reading it
    got empty input): one JSON line now says so, the entry ``batch`` reports for a failed
    item; the error still goes to stderr and the status is still 1 (CLI review)."""
    source, error = source.format(tmp=tmp_path), error.format(tmp=tmp_path)
    assert cli.main([a.format(tmp=tmp_path) for a in argv]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"source": source, "status": "failed", "error": error, "acis": [],
                                        "bytes_fetched": 0, "seconds": 0.0, "manifest_digest": None}
    assert captured.err.startswith("Error: ") and captured.err.endswith(f" {error}\n")


@pytest.mark.parametrize("argv, hint", [
    (["--compresion", "none", "x.tar"], "did you mean --compression?"),
    (["-compresion=none", "x.tar"], "did you mean --compression?"),
    (["run", "--stgae", "fly", "x.aci"], "did you mean --stage?"),
    (["--zzz", "x.tar"], None),
])
def test_a_misspelled_flag_names_the_closest(capsys: pytest.CaptureFixture[str], argv: list[str],
                                             hint: str | None) -> None:
    """A usage error (status 2) that says which flag was meant (the newcomer trial's
    ``--compresion`` got only "unrecognized arguments")."""
    assert cli.main(argv) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"Error: unknown option {argv[1 if argv[0] == 'run' else 0].split('=')[0]}")
    assert first.endswith(f"; {hint}") if hint else "did you mean" not in first


@pytest.mark.parametrize("argv, first", [
    (["run", "--output-dir", "d", "x.aci"], "Error: --output-dir is not an option of docker2aci run but of convert, "
                                            "batch, mirror, discover (docker2aci run --help lists run's)"),
    (["batch", "--nosquash", "f"], "Error: --nosquash is not an option of docker2aci batch but of convert "
                                   "(docker2aci batch --help lists batch's)"),
    (["--ouput-dir", "x", "save.tar"], "Error: unknown option --ouput-dir; did you mean --output-dir?"),
])
def test_an_option_of_another_command_is_said_to_be_so(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                       first: str) -> None:
    """``run --output-dir d X.aci`` said "unrecognized arguments: --output-dir X.aci; did
    you mean --trust-dir?": the option's value was taken for the image, the image listed
    as unrecognized, and the closest option of run was not the one meant (new-user trial).
    The option is named alone, with the commands that have it."""
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.splitlines()[0] == first


@pytest.mark.parametrize("argv, first", [
    (["run", "-e", "FOO=bar", "x.aci"], "Error: unknown option -e; -e is no flag of docker2aci: "
                                        "write flags whole (--help lists them)"),
    (["run", "-p", "8080:80", "x.aci"], "Error: unknown option -p; -p is no flag of docker2aci: "
                                        "write flags whole (--help lists them)"),
    (["-d", "x.tar"], "Error: unknown option -d; -d is no flag of docker2aci: write flags whole "
                      "(--help lists them)"),
    (["mirror", "-a", "x"], "Error: unknown option -a; -a is no flag of docker2aci: write flags whole "
                            "(--help lists them)"),
    (["-nosq", "x.tar"], "Error: unknown option -nosq; did you mean --nosquash?"),
])
def test_a_prefix_of_a_single_dash_flag_is_no_flag(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                    first: str) -> None:
    """argparse before 3.12 took any prefix of a ``-flag`` (Go's single-dash form) even
    with ``allow_abbrev=False``: Docker's ``run -e FOO=bar IMG`` ran ``--exec FOO=bar``
    (exit 127), ``-p 8080:80`` was ``--platform``, ``-d`` was ``--debug`` (new-user review).
    Now a usage error, status 2; whole single-dash flags still work (``-image``)."""
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.splitlines()[0] == first


@pytest.mark.parametrize("argv, status, first", [
    (["inpsect", "x.aci"], 2, "Error: unknown command 'inpsect': did you mean 'inspect'? (a file of that name "
                              "does not exist either; see docker2aci --help)"),
    (["fecth", "--insecure-options=image", "x"], 2, "Error: unknown command 'fecth': did you mean 'fetch'?"),
    # docker pull, skopeo copy: the source comes first (new-user review: "unrecognized arguments")
    (["pull", "docker://busybox"], 2, "Error: unknown command 'pull': docker2aci converts the SOURCE given first, "
                                      "with no command (docker2aci docker://busybox); see docker2aci --help"),
    (["copy", "docker://busybox", "oci:x"], 2, "Error: unknown command 'copy': docker2aci converts the SOURCE "
                                               "given first, with no command (docker2aci docker://busybox); see "
                                               "docker2aci --help"),
    (["help"], 0, "usage: docker2aci [-debug] [-nosquash]"),
    (["help", "inspect"], 0, "usage: docker2aci inspect [-h] [--json] ACI [ACI ...]"),
    (["hello"], 1, "Error: conversion error: hello: no such file or directory"),  # a source, as the reference reads it
    (["inpsect.tar"], 1, "Error: conversion error: inpsect.tar: no such file or directory"),
])
def test_a_mistyped_command_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, argv: list[str], status: int, first: str) -> None:
    """``docker2aci inpsect x.aci`` said "unrecognized arguments: x.aci" and ``docker2aci
    help`` "help: no such file or directory" (new-user review): a bare word close to a
    command, naming no file, is a mistyped command; ``help [COMMAND]`` is ``--help``."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) if status == 0 else contextlib.nullcontext():
        assert cli.main(argv) == status
    captured = capsys.readouterr()
    assert (captured.out if status == 0 else captured.err).startswith(first)
    (tmp_path / "inpsect").write_text("a file of that name: a source")
    if argv[0] == "inpsect":
        assert cli.main(["inpsect"]) == 1  # converted (and refused), not a typo
        assert "Error: conversion error: inpsect: " in capsys.readouterr().err


def test_the_help_says_what_the_readme_says(capsys: pytest.CaptureFixture[str]) -> None:
    """The usage gave ``docker-archive:PATH`` (the README and the parser take
    ``PATH[:NAME[:TAG]]``); ``batch --help`` did not say an item's ``output_dir`` is under
    ``--output-dir`` (new-user review)."""
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "| docker-archive:PATH[:NAME[:TAG]] |" in out
    # the explicit command, for a file named like one, was in no help (review)
    assert "\n       docker2aci convert [OPTIONS] IMAGE      (the same: for an IMAGE file named like a command)\n" in out
    with pytest.raises(SystemExit):
        cli.main(["batch", "--help"])
    assert "output_dir(under--output-dir)" in "".join(capsys.readouterr().out.split())  # however wrapped


_TRUST = "(default: /etc/docker2aci/trust for root, else $XDG_CONFIG_HOME/docker2aci/trust or ~/.config/docker2aci/trust)"
_CACHE = "(default: $XDG_CACHE_HOME/docker2aci or ~/.cache/docker2aci)"


@pytest.mark.parametrize("argv, says", [
    (["run", "--help"], _TRUST), (["fetch", "--help"], _TRUST), (["discover", "--help"], _TRUST),
    (["trust", "list", "--help"], _TRUST), (["run", "--help"], _CACHE), (["--help"], _CACHE), (["gc", "--help"], _CACHE),
    (["mirror", "--help"], _CACHE),
    (["keys", "list", "--help"], "(default: $XDG_CONFIG_HOME/docker2aci/keys or ~/.config/docker2aci/keys)"),
    (["batch", "--help"], "Convert N images at once, in local worker processes (default 1: one after the other; "
                          "--executor dask ignores it)"),
])
def test_the_help_gives_each_default_directory(capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    """``--trust-dir`` of run, fetch and discover, ``--keys-dir`` and ``--cache-dir`` gave the
    ``~`` default only, though ``XDG_CONFIG_HOME``/``XDG_CACHE_HOME`` move it; ``--jobs`` gave
    no default (CLI review)."""
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert says in " ".join(capsys.readouterr().out.split())  # however wrapped


@pytest.mark.parametrize("argv", [["completion", "zsh"], ["--version"], ["gc", "--cache-dir", "{tmp}"]])
def test_output_to_a_reader_that_went_away(tmp_path: Path, argv: list[str]) -> None:
    """``docker2aci ... | head -1``: a reader that closed the pipe first gets the status of a
    death by SIGPIPE (141, as the reference, a Go program, exits) and no traceback (it was
    status 1 and a BrokenPipeError traceback, from the print or from the flush at exit)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "docker2aci", *(a.format(tmp=tmp_path) for a in argv)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


@pytest.mark.parametrize("argv", [["completion", "zsh"], ["--version"], ["--help"],
                                  ["gc", "--cache-dir", "{tmp}"],
                                  ["--json", "--output-dir", "{tmp}/out", "docker-archive:{tmp}/a.tar"]])
@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED"])
def test_output_that_cannot_be_written(tmp_path: Path, argv: list[str], unbuffered: str) -> None:
    """``docker2aci ... > /dev/full`` (a full disk, a failing device): one line on stderr
    that says so, and status 1; it was an ``OSError`` traceback, and status 120 after
    ``--help`` (CLI review). Unbuffered, argparse's ``--help`` swallows the error: it is
    still said."""
    (tmp_path / "a.tar").write_bytes(hb.docker_save([BASE], config=hb.image_config([BASE])))
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "docker2aci", *(a.format(tmp=tmp_path) for a in argv)],
                              stdout=full, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                                   "PYTHONUNBUFFERED": unbuffered})
    assert (done.returncode, done.stderr) == (1, "Error: writing standard output: No space left on device\n")
    if "--json" in argv:  # the ACI itself was written: only its report is lost
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["test-hostile-latest.aci"]


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED"])
def test_output_cut_short_by_a_file_size_limit_is_said(tmp_path: Path, unbuffered: str) -> None:
    """A short write (here the file size limit, ``ulimit -f``; a non-blocking pipe gives
    them too): unbuffered, the text layer ignored the count, and the completion script was
    cut at 4 KiB with status 0 (review)."""
    import resource

    out = tmp_path / "out"
    with out.open("wb") as f:
        done = subprocess.run([sys.executable, "-m", "docker2aci", "completion", "bash"], stdout=f,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)),
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                                   "PYTHONUNBUFFERED": unbuffered})
    assert (done.returncode, done.stderr) == (1, "Error: writing standard output: File too large\n")
    assert out.stat().st_size == 4096


def test_unbuffered_output_stays_unbuffered(tmp_path: Path) -> None:
    """Under ``PYTHONUNBUFFERED`` (Dockerfiles, CI) the stream that reports write errors
    buffered the output anyway: the ``--json`` line of a failed conversion came after its
    error line in ``2>&1`` (review)."""
    done = subprocess.run([sys.executable, "-m", "docker2aci", "--json", f"oci-archive:{tmp_path}/none.tar"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"})
    first, second = done.stdout.splitlines()
    assert (done.returncode, json.loads(first)["status"]) == (1, "failed")
    assert second == f"Error: conversion error: oci-archive:{tmp_path}/none.tar: no such file or directory"


@pytest.mark.parametrize("argv, first", [
    (["render", "x.aci", ""], "Error: argument DIR: empty: give a path"),
    (["render", "", "dir"], "Error: argument ACI: empty: give a path"),
    (["verify", ""], "Error: argument ACI: empty: give a path"),
    (["sign", "--key", "k.asc", "x.aci", ""], "Error: argument ACI: empty: give a path"),
    (["validate", ""], "Error: argument ACI: empty: give a path"),
    (["inspect", "x.aci", ""], "Error: argument ACI: empty: give a path"),
    (["batch", ""], "Error: argument FILE|-: empty: give a path"),
    (["trust", "add", "--root", ""], "Error: argument KEYFILE: empty: give a path"),
    (["keys", "import", ""], "Error: argument KEYFILE: empty: give a path"),
    # a signing flag from an unset variable: the ACI was written unsigned (exit 0), the key
    # unprotected, the default signature checked (docs review)
    (["x.tar", "--sign", ""], "Error: argument --sign/-sign: empty: give a key file, or a key's fingerprint or key ID"),
    (["x.tar", "--sign", "k.asc", "--sign-passphrase-file", ""],
     "Error: argument --sign-passphrase-file/-sign-passphrase-file: empty: give a path"),
    (["x.tar", "--gpg-key", ""],
     "Error: argument --gpg-key/-gpg-key: empty: give a key ID or fingerprint of your gpg keyring"),
    (["run", "x.aci", "--sign", ""],
     "Error: argument --sign/-sign: empty: give a key file, or a key's fingerprint or key ID"),
    (["batch", "b.txt", "--gpg-key", ""],
     "Error: argument --gpg-key/-gpg-key: empty: give a key ID or fingerprint of your gpg keyring"),
    (["sign", "--key", "", "x.aci"],
     "Error: argument --key/-key: empty: give a key file, or a key's fingerprint or key ID"),
    (["sign", "--gpg-key", "", "x.aci"],
     "Error: argument --gpg-key/-gpg-key: empty: give a key ID or fingerprint of your gpg keyring"),
    (["sign", "--key", "k.asc", "--passphrase-file", "", "x.aci"],
     "Error: argument --passphrase-file/-passphrase-file/--sign-passphrase-file: empty: give a path"),
    (["keys", "generate", "--name", "A <a@example.com>", "--passphrase-file", ""],
     "Error: argument --passphrase-file/-passphrase-file: empty: give a path"),
    (["verify", "x.aci", "--signature", ""], "Error: argument --signature/-signature: empty: give a path"),
    # an empty --platform was the host's platform
    (["x.tar", "--platform", ""],
     "Error: argument --platform/-platform: empty: give os/arch[/variant] (or leave the flag out for the host's)"),
    (["run", "x.aci", "--platform", " "],
     "Error: argument --platform/-platform: empty: give os/arch[/variant] (or leave the flag out for the host's)"),
    # an empty --creds (an unset variable) is not the Docker config files' credentials; a local
    # source ignored it, a registry refused it later without saying it was empty
    (["x.tar", "--creds", ""], "Error: argument --creds/-creds: empty: give USER:PASSWORD (or leave the flag out "
                               "for the Docker config files' credentials)"),
    (["mirror", "reg.example/r", "--creds="], "Error: argument --creds/-creds: empty: give USER:PASSWORD (or leave "
                                              "the flag out for the Docker config files' credentials)"),
    (["fetch", "x.tar", "-creds", ""], "Error: argument --creds/-creds: empty: give USER:PASSWORD (or leave the "
                                       "flag out for the Docker config files' credentials)"),
])
def test_an_empty_path_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                                 first: str) -> None:
    """An empty file or directory argument (an unset variable, ``render "$ACI" "$DIR"``) was
    taken as the current directory or as a file named '': ``render x.aci ''`` said
    ": not an empty directory", ``verify ''`` ": not signed", ``inspect ''`` ": not an ACI"."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.splitlines()[0] == first


@pytest.mark.parametrize("argv, first", [
    (["--memory", "12Q"], "Error: --memory: memory '12Q': unknown suffix 'Q'; use none (bytes), k, K, M, G, T, P, "
                          "E, Ki, Mi, Gi, Ti, Pi, Ei"),
    (["--cpu", ""], "Error: --cpu: cpu '': not a quantity (a number and an optional suffix, e.g. \"500m\", \"1\")"),
    # out of the runtime's range: it was found after the image was verified and rendered, status 1 (new-user trial)
    (["--memory", "1"], "Error: --memory: memory limit 1 bytes: choose from 6291456 (6Mi) to 9223372036854775807"),
    (["--cpu", "5m"], "Error: --cpu: cpu limit 5m: choose from 10m to 1099511627776m"),
    (["--volume", ""], "Error: --volume: volume '': no name (write NAME,kind=host,source=PATH or NAME,kind=empty)"),
    (["--hostname", "a_b"], "Error: --hostname: hostname 'a_b': use at most 64 letters, digits, hyphens and dots "
                            "(labels neither start nor end with a hyphen)"),
])
def test_a_run_flag_s_error_names_the_flag(capsys: pytest.CaptureFixture[str], argv: list[str], first: str) -> None:
    """``run --memory 12Q`` said "memory '12Q': unknown suffix", naming the value but not the
    flag (CLI review)."""
    assert cli.main(["run", "x.aci", *argv]) == 2
    assert capsys.readouterr().err.splitlines()[0] == first


@pytest.mark.parametrize("argv", [["--version"], ["-version"], ["version"]])
def test_the_version_is_printed_however_it_is_asked_for(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``docker2aci version`` (docker's and git's form) was a conversion error: "version:
    no such file or directory" (new-user trial); a file named ``version`` is still converted."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == f"docker2aci version {__version__}\nappc version 0.8.11\n"
    if argv == ["version"]:
        (tmp_path / "version").write_text("not an image")
        assert cli.main(argv) == 1
        assert "conversion error: version: " in capsys.readouterr().err


def test_gc_of_a_cache_dir_that_does_not_exist_says_so(capsys: pytest.CaptureFixture[str],
                                                       caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """``gc --cache-dir`` with a typo reported "freed 0 bytes" and nothing else (review):
    a warning names the directory; status 0 (a cache not made yet has nothing to collect)."""
    assert cli.main(["gc", "--json", "--cache-dir", str(tmp_path / "typo")]) == 0
    assert json.loads(capsys.readouterr().out)["cache_bytes_freed"] == 0
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"--cache-dir {tmp_path / 'typo'} does not exist: nothing to collect")]
    assert not (tmp_path / "typo").exists()
    caplog.clear()
    assert cli.main(["gc", "--json", "--cache-dir", str(tmp_path)]) == 0
    assert caplog.records == []
