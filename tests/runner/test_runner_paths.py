"""runner.paths: resolving inside a root (cases 12, 13, 59)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from docker2aci.errors import RunnerError
from runner.paths import (
    Escape,
    PathEscapeError,
    make_dirs_in_root,
    read_text_in_root,
    resolve_in_root,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    tree = tmp_path / "root"
    (tree / "run").mkdir(parents=True)
    (tree / "var").mkdir()
    os.symlink("/run", tree / "var/run")
    os.symlink("../../../../..", tree / "up")
    os.symlink("loop", tree / "loop")
    (tree / "etc").mkdir()
    os.symlink("/../../etc/hostname", tree / "etc/passwd")
    return tree


def test_absolute_links_restart_at_the_root(root: Path) -> None:
    assert resolve_in_root(root, "/var/run/secrets/token") == str(root / "run/secrets/token")
    assert resolve_in_root(root, "var/run", follow_final=False) == str(root / "var/run")


def test_dotdot_is_clamped_at_run_time_and_refused_when_rendering(root: Path) -> None:
    assert resolve_in_root(root, "/up/etc") == str(root / "etc")
    with pytest.raises(PathEscapeError):
        resolve_in_root(root, "/up/etc", escape=Escape.REFUSE)


def test_link_loops_stop(root: Path) -> None:
    with pytest.raises(RunnerError, match="too many levels"):
        resolve_in_root(root, "/loop/x")


def test_make_dirs_creates_through_links_inside_the_tree(root: Path) -> None:
    made = make_dirs_in_root(root, "/var/run/secrets")

    assert made == str(root / "run/secrets")
    assert os.path.isdir(made)
    assert oct(os.stat(made).st_mode & 0o777) == oct(0o755)


def test_reading_never_follows_a_link_to_the_host(root: Path, tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("host file")

    assert read_text_in_root(root, "/etc/passwd") is None
    (root / "etc/hostname").write_text("image file")
    assert read_text_in_root(root, "/etc/passwd") == "image file"


def test_made_directories_get_their_mode_whatever_the_umask(root: Path) -> None:
    """A volume's missing parents must be searchable by the app's user: mode 0755 even
    under a runner umask of 077."""
    old = os.umask(0o077)
    try:
        made = make_dirs_in_root(root, "/srv/data/logs")
    finally:
        os.umask(old)

    assert made == str(root / "srv/data/logs")
    for path in ("srv", "srv/data", "srv/data/logs"):
        assert (root / path).stat().st_mode & 0o7777 == 0o755
