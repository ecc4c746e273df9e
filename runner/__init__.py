"""Run App Container Images (ACI): verify the signature, render the rootfs, then start the
app in a stage: ``fly`` (chroot in a private mount namespace, like rkt's stage1-fly) or
``isolated`` (namespaces and cgroup limits through an OCI runtime, runc). Errors are
:class:`docker2aci.errors.RunnerError` (and ``VerificationError`` for signatures).
"""

from __future__ import annotations

from runner.api import INSECURE_OPTIONS, STAGES, Isolation, run_aci

__all__ = ["INSECURE_OPTIONS", "STAGES", "Isolation", "run_aci"]
