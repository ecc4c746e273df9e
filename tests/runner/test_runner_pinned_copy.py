"""The runner verifies and renders one private copy of the ACI: an ACI that is not a
regular file (a FIFO could serve signed bytes to the check and other bytes to the
render) is refused before anything is read for the check."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import runner
from docker2aci.errors import RunnerError


def test_a_fifo_is_not_an_aci(tmp_path: Path) -> None:
    fifo = tmp_path / "image.aci"
    os.mkfifo(fifo)
    (tmp_path / "image.aci.asc").write_text("not read")

    def writer() -> None:
        try:
            with open(fifo, "wb") as f:
                f.write(b"\0" * 1024)
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    with pytest.raises(RunnerError, match="not a regular file"):
        runner.run_aci(fifo, [], trust_dir=str(tmp_path / "trust"))
    thread.join(timeout=5)
    assert not thread.is_alive()
