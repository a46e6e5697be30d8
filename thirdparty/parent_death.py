"""Children that die with their parent: Linux ``prctl(PR_SET_PDEATHSIG)`` through ctypes.

:Status: used by ``thirdparty/local_cluster.py`` and the benchmarks (``benchmarks/harness.py`` re-exports it).

``die_with_parent(signum)`` asks the kernel to send ``signum`` to the calling process when its parent goes away,
even by SIGKILL; run it in a child, e.g. as ``subprocess.Popen(..., preexec_fn=die_with_parent)``. The setting
survives ``exec`` and is cleared by ``fork``. Two caveats of the kernel's: the "parent" is the *thread* that
forked the child, so start such children from a thread that lives as long as the process (the main thread, or
the event loop's); and a parent that died before the call is noticed by comparing ``getppid()`` with the pid
the parent had, which ``expected_parent`` does.

libc is resolved at import time, in the parent, so that the child (between fork and exec, where another thread
of the parent may have held the loader's lock) only calls an already resolved function.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable

PR_SET_PDEATHSIG = 1

_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    _prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(signum: int = signal.SIGTERM, expected_parent: int | None = None) -> None:
    """Get ``signum`` when the parent exits (no-op off Linux); if ``expected_parent`` is given and is no longer
    the parent (it died before this call), send ``signum`` to this process at once."""
    if _prctl is None:
        return
    _prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), signum)


def pdeathsig_preexec(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for subprocess that makes the child die with this process (see the module docstring)."""
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: no locks, no logging
        die_with_parent(signum, parent)

    return preexec
