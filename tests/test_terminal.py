"""What an image, an archive or a registry wrote never drives the terminal: control
characters, OSC 8 hyperlinks, OSC 52 clipboard writes and bidi overrides in an image's
volumes, a ``docker save`` archive's ``RepoTags``, an index's platforms and a batch's
errors are shown escaped (:mod:`docker2aci.terminal`), by the text output, the error
line, the log and the batch/mirror summary."""

from __future__ import annotations

import io
import json
import logging
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docker2aci import cli
from docker2aci.cli_common import RedactingFormatter
from docker2aci.errors import SeveralImages
from docker2aci.jobs import JobResult
from docker2aci.report import print_summary
from docker2aci.terminal import go_quoted, printable

import hostilebuild as hb

OSC52 = "\x1b]52;c;ZXZpbA==\x07"  # writes "evil" to the clipboard
OSC8 = "\x1b]8;;http://evil.invalid/\x07click\x1b]8;;\x07"  # a hyperlink that shows "click"
BASE = hb.tar([hb.dir_("etc"), hb.file("etc/passwd", hb.PASSWD), hb.file("hello", b"hi\n")])


@pytest.mark.parametrize(("text", "newlines", "shown"), [
    pytest.param("library/busybox:1.36", False, "library/busybox:1.36", id="plain"),
    pytest.param("héllo wörld ✓", False, "héllo wörld ✓", id="printable-unicode-kept"),
    pytest.param(f"a{OSC52}b", False, "a\\x1b]52;c;ZXZpbA==\\x07b", id="osc52"),
    pytest.param("ok\rFAILED\x08\x7f", False, "ok\\rFAILED\\x08\\x7f", id="cr-backspace-del"),
    pytest.param("a\u202eb\u2028c\x85", False, "a\\u202eb\\u2028c\\x85", id="bidi-separator-c1"),
    pytest.param("\U000e0041", False, "\\U000e0041", id="tag-character"),
    pytest.param("name\udcff", False, "name\\udcff", id="byte-not-utf8"),
    pytest.param("one\ttwo\nthree", False, "one\\ttwo\\nthree", id="one-line"),
    pytest.param("one\n\x1b[2Jtwo", True, "one\n  \\x1b[2Jtwo", id="lines-kept-indented"),
    pytest.param("one\nERROR: two\n", True, "one\n  ERROR: two\n  ", id="no-line-of-its-own"),
])
def test_printable(text: str, newlines: bool, shown: str) -> None:
    assert printable(text, newlines=newlines) == shown


@pytest.mark.parametrize(("text", "quoted"), [
    # each right-hand side is what Go 1.19's fmt.Printf("%q") printed for the left-hand side
    pytest.param('/a"b', '"/a\\"b"', id="double-quote"),
    pytest.param("/c\\d", '"/c\\\\d"', id="backslash"),
    pytest.param("/t\tab", '"/t\\tab"', id="tab"),
    pytest.param("/données", '"/données"', id="printable-unicode-kept"),
    pytest.param("/x\x1b[31m", '"/x\\x1b[31m"', id="escape"),
    pytest.param("/\u202e", '"/\\u202e"', id="bidi"),
    pytest.param("/\u00a0", '"/\\u00a0"', id="no-break-space"),
    pytest.param("/\udcff", '"/\\xff"', id="byte-not-utf8"),
    pytest.param("/\U000e0001", '"/\\U000e0001"', id="tag-character"),
])
def test_go_quoted(text: str, quoted: str) -> None:
    assert go_quoted(text) == quoted


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
def test_converted_volumes_show_the_path_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``umoci config --config.volume`` stores any path; the text output quoted it raw."""
    layout = tmp_path / "layout"
    layer = tmp_path / "layer.tar"
    layer.write_bytes(BASE)
    for argv in (["init", "--layout", layout], ["new", "--image", f"{layout}:latest"],
                 ["raw", "add-layer", "--image", f"{layout}:latest", layer],
                 ["config", "--image", f"{layout}:latest", "--os", "linux", "--architecture", "amd64",
                  "--config.volume", "/data\x1b[2J\u202e"]):
        subprocess.run(["umoci", *map(str, argv)], check=True, capture_output=True)
    status = cli.main(["--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                       f"oci:{layout}:latest"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert '\tname: "volume-data-2j", path: "/data\\x1b[2J\\u202e", readOnly: false' in captured.out.splitlines()
    assert "\x1b" not in captured.out + captured.err and "\u202e" not in captured.out


def test_a_repo_tag_is_quoted_escaped_in_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ``RepoTags`` entry no tool writes (``manifest.json`` as Docker lays it out, built
    here): the error repeated it raw after the escaped quote."""
    archive = tmp_path / "a.tar"
    archive.write_bytes(hb.docker_save([BASE], repo_tag=f"test/x:la{OSC52}t", config=hb.image_config([BASE])))
    assert cli.main(["--output-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
                     f"docker-archive:{archive}"]) == 1
    err = capsys.readouterr().err
    assert err == (f"Error: conversion error: docker-archive:{archive}: image name "
                   "'test/x:la\\x1b]52;c;ZXZpbA==\\x07t': test/x:la\\x1b]52;c;ZXZpbA==\\x07t: invalid tag format\n")


def test_a_newline_in_a_repo_tag_cannot_fake_an_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ``RepoTags`` entry holding a newline (``manifest.json`` built here, as above): the
    error quoted it, and its second line began as a line of its own."""
    archive = tmp_path / "a.tar"
    archive.write_bytes(hb.docker_save([BASE], repo_tag="test/x:a\nError: none, all good",
                                       config=hb.image_config([BASE])))
    assert cli.main(["--output-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
                     f"docker-archive:{archive}"]) == 1
    err = capsys.readouterr().err
    assert err == (f"Error: conversion error: docker-archive:{archive}: image name "
                   "'test/x:a\\nError: none, all good': test/x:a\n  Error: none, all good: invalid tag format\n")


def test_the_list_of_images_holds_each_name_on_one_line() -> None:
    """The reference's list of an archive's images, one name a line, unindented: a name
    (a ``RepoTags`` entry) holding a newline is escaped, not a line of its own."""
    err = SeveralImages("save.tar", ["busybox:latest", "x:1\nError: none", f"y:{OSC52}"])
    assert str(err) == ("save.tar: several images found, use option --image with one of:\n\n"
                        "busybox:latest\nx:1\\nError: none\ny:\\x1b]52;c;ZXZpbA==\\x07")
    assert err.names[1] == "x:1\nError: none"


def test_the_source_of_a_list_of_images_cannot_fake_an_error_line(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The list of images is shown unindented; the archive's path before it (a file name
    may hold a newline) is one line all the same: its second line began as a line of its own."""
    config = hb.image_config([BASE])
    one = {"Config": hb.sha256(config) + ".json", "RepoTags": ["a/b:1"], "Layers": []}
    archive = tmp_path / "x\nError: none, all good.tar"
    archive.write_bytes(hb.docker_save([BASE], config=config, manifest=[one, {**one, "RepoTags": ["c/d:2"]}]))
    assert cli.main(["--output-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
                     f"docker-archive:{archive}"]) == 1
    err = capsys.readouterr().err
    assert err == (f"Error: conversion error: docker-archive:{tmp_path}/x\\nError: none, all good.tar: several "
                   "images found, use option --image with one of:\n\na/b:1\nc/d:2\n")


def test_a_logged_value_cannot_fake_a_log_line() -> None:
    """A value a message quotes (a media type, a label) that holds a newline: its second
    line began as a log line of its own."""
    record = logging.LogRecord("docker2aci.layers", logging.WARNING, __file__, 1, "%s: media type %s says gzip",
                               ("layer 1", "x\nINFO: layer 1 verified"), None)
    assert RedactingFormatter("%(levelname)s: %(message)s").format(record) == (
        "WARNING: layer 1: media type x\n  INFO: layer 1 verified says gzip")


def test_an_index_platform_is_logged_escaped(tmp_path: Path) -> None:
    """An image index (OCI image-layout spec, built here: no tool writes this architecture)
    whose skipped platform holds an OSC 52 clipboard write: the warning logged it raw."""
    layout = tmp_path / "layout"
    image = hb.oci_layout(layout, [BASE])
    digest = "sha256:" + hb.sha256(image.manifest)
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": hb.OCI_MANIFEST, "digest": digest, "size": len(image.manifest),
         "platform": {"os": "linux", "architecture": f"x{OSC52}"}},
        {"mediaType": hb.OCI_MANIFEST, "digest": digest, "size": len(image.manifest),
         "platform": {"os": "linux", "architecture": hb.goarch()}}]}).encode()
    hb.put_blob(layout, index)
    hb.write_index(layout, [{"mediaType": "application/vnd.oci.image.index.v1+json",
                             "digest": "sha256:" + hb.sha256(index), "size": len(index),
                             "annotations": {hb.REF_NAME: "latest"}}])
    done = subprocess.run([sys.executable, "-m", "docker2aci", "--platform", "all", "--output-dir",
                           str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), f"oci:{layout}"],
                          check=False, capture_output=True, text=True)  # a process of its own: its log handler, not pytest's
    err = done.stderr
    assert done.returncode == 0, err
    assert err.splitlines()[0] == (f"WARNING: oci:{layout}: skipping platform linux/x\\x1b]52;c;zxzpba==\\x07, "
                                   "which appc cannot name")
    assert "\x1b" not in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_summary_shows_errors_escaped() -> None:
    """rich strips BEL, BS and CR but not ESC; a tab or newline broke the pipe's one line per item."""
    failed = JobResult("docker-archive:a.tar", "failed", f"image name 'x': x{OSC8}\x1b[2J\tmore\nlines")
    piped = io.StringIO()
    print_summary([failed], stream=piped)
    assert piped.getvalue() == ("failed\tdocker-archive:a.tar\timage name 'x': "
                                "x\\x1b]8;;http://evil.invalid/\\x07click\\x1b]8;;\\x07\\x1b[2J\\tmore\\nlines\n")
    table = _Terminal()
    print_summary([failed], stream=table)
    assert "\x1b]" not in table.getvalue() and "\x1b[2J" not in table.getvalue()
    assert "\\x1b]8;;http://evil.invalid/\\x07click" in table.getvalue().replace("│", "").replace(" ", "")


_SGR = re.compile(r"\x1b\[[0-9;]*m")


def _convert_on_a_terminal(tmp_path: Path, layout: Path, term: str) -> str:
    """What ``docker2aci oci:LAYOUT`` writes to its standard error, a pseudo-terminal (the
    TERM ``term``), colours left out; standard output is a pipe."""
    return _on_a_terminal(tmp_path, term, [], f"oci:{layout}")


def _on_a_terminal(tmp_path: Path, term: str, command: list[str], source: str) -> str:
    """What ``docker2aci COMMAND... [flags] SOURCE`` writes to its standard error, a
    pseudo-terminal (the TERM ``term``), colours left out; standard output is a pipe. The
    flags convert again, uncompressed, into ``tmp_path``."""
    import os
    import pty

    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")}
    env.update(TERM=term, PYTHONPATH=os.pathsep.join(sys.path))
    master, slave = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "docker2aci", *command, "--no-cache", "--compression", "none",
                           "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                           source], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                          env=env) as child:
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            shown += chunk
        os.close(master)
        assert child.wait() == 0, shown
    return _SGR.sub("", shown.decode())


def test_a_log_line_goes_above_the_progress_bar(tmp_path: Path) -> None:
    """A warning logged while the bar of the layers read was shown was written after the
    bar, on its line (``Read 2/2 layers ━━━ 0/? bytes ?WARNING: ...``): the log handler
    held the terminal itself, not rich's proxy. Now each warning starts a line of its own,
    whole (not wrapped at the terminal's width)."""
    big = hb.tar([hb.file("big", random.randbytes(60_000_000))])  # read long enough for the bar to be drawn
    config = hb.image_config([big, BASE], config={"Env": ["NO_EQUALS_SIGN", "1BAD=x"]})
    hb.oci_layout(tmp_path / "layout", [big, BASE], config=config)
    shown = _convert_on_a_terminal(tmp_path, tmp_path / "layout", "xterm")
    assert "Reading layers" in shown.split("WARNING")[0]  # the bar was there before the warnings
    # the layers' bar counts layers: it showed the byte columns, "0/? bytes ?"
    assert [line for line in re.split(r"[\r\n]", shown) if "layers" in line and "bytes" in line] == []
    for warning in ("WARNING: oci:{}: environment entry 'NO_EQUALS_SIGN' has no '='; dropped\r\n",
                    "WARNING: oci:{}: environment variable name '1BAD' is not valid in appc; dropped\r\n"):
        text = warning.format(f"{tmp_path / 'layout'} (linux/{hb.goarch()})")
        before = shown[:shown.index(text)]
        assert before.endswith(("\n", "\r", "\r\x1b[2K")), repr(before[-80:])


def test_a_worker_log_line_goes_above_the_batch_progress_bar(tmp_path: Path) -> None:
    """``batch --jobs 2``: a worker process wrote its warnings to the terminal itself, after
    the bar of items, on its line (``Converting ━━━ 0/2 0:00:00WARNING: ...``). Each of its
    lines now starts on the bar's line, erased, and the bar is redrawn below it."""
    config = hb.image_config([BASE], config={"Env": ["NO_EQUALS_SIGN"]})
    layouts = [tmp_path / "one", tmp_path / "two"]
    for layout in layouts:
        hb.oci_layout(layout, [BASE], config=config)
    (tmp_path / "batch.txt").write_text("".join(f"oci:{layout}\n" for layout in layouts))
    shown = _on_a_terminal(tmp_path, "xterm", ["batch", "--jobs", "2"], str(tmp_path / "batch.txt"))
    assert "Converting" in shown.split("WARNING")[0]  # the bar was there before the warnings
    for layout in layouts:
        text = (f"WARNING: oci:{layout} (linux/{hb.goarch()}): environment entry 'NO_EQUALS_SIGN' has no '='; "
                "dropped\r\n")
        before = shown[:shown.index(text)]
        assert before.endswith(("\n", "\r", "\r\x1b[2K")), repr(before[-80:])


def test_no_progress_on_a_dumb_terminal(tmp_path: Path) -> None:
    """``TERM=dumb``: rich draws no bar there, but ended the conversion with an empty line
    on standard error."""
    hb.oci_layout(tmp_path / "layout", [BASE])
    assert _convert_on_a_terminal(tmp_path, tmp_path / "layout", "dumb") == ""
