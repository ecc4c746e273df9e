"""Run App Container Images (ACI): render the rootfs, then start the app in a stage1.

Only the ``fly`` stage exists (chroot in a private mount namespace, like rkt's
stage1-fly). Errors are :class:`docker2aci.errors.RunnerError`.
"""

from __future__ import annotations

from runner.api import INSECURE_OPTIONS, STAGES, run_aci

__all__ = ["INSECURE_OPTIONS", "STAGES", "run_aci"]
