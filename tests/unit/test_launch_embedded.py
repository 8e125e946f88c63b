"""Starting the embedded model for one command (`launch.embedded`) with the cluster faked, and
SIGTERM as Ctrl-C (`launch.interrupt`), each checked by what it does, not that it ran."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

import dynasor_sgl.launch.embedded as embedded
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.interrupt import interrupt_on_terminate


def test_the_embedded_model_runs_as_long_as_the_stack(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, Any] = {}

    @contextmanager
    def fake_cluster(cfg: LaunchConfig, progress: Callable[[str], None]) -> Iterator[Any]:
        seen["cfg"] = cfg
        progress("worker 1 healthy")
        yield SimpleNamespace(url=f"http://127.0.0.1:{cfg.port}")
        seen["stopped"] = True

    monkeypatch.setattr(embedded, "run_cluster", fake_cluster)
    monkeypatch.setattr(embedded, "free_ports", lambda host, start, n: [38507])
    with ExitStack() as stack:
        assert embedded.launch_embedded(stack) == "http://127.0.0.1:38507"
        assert "stopped" not in seen
    assert seen["stopped"] and seen["cfg"].log_level == "warning"
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "worker 1 healthy\n")  # progress on stderr only


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restored_handlers")
def test_sigterm_and_sighup_end_the_process_as_ctrl_c_does() -> None:
    interrupt_on_terminate()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with pytest.raises(KeyboardInterrupt, match=signal.Signals(sig).name):
            signal.raise_signal(sig)


@pytest.mark.usefixtures("restored_handlers")
def test_off_the_main_thread_nothing_changes() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    thread = threading.Thread(target=interrupt_on_terminate)
    thread.start()
    thread.join()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
