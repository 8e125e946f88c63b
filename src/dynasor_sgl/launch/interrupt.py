"""SIGTERM and SIGHUP turned into Ctrl-C, so that a process which started workers stops them
when it is killed. Knows nothing about what the process runs.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


def interrupt_on_terminate() -> None:
    """From now on SIGTERM and SIGHUP end this process as Ctrl-C does (KeyboardInterrupt in
    the main thread), so a command's cleanup runs: the SGLang workers it started are stopped
    (without this, `kill` leaves them running, orphaned) and a batch run keeps its records.
    No-op off the main thread, where Python cannot set handlers."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
