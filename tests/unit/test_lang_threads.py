"""The frontend's `StreamExecutor.end` as `dynasor_sgl.lang` installs it: it never asks whether
the worker thread lives (the question takes a lock a starting thread may hold while the garbage
collector finalizes a program state in it), and it still stops the worker."""

from __future__ import annotations

import queue
import threading
from typing import Any

from sglang.lang.interpreter import StreamExecutor

import dynasor_sgl.lang  # noqa: F401  (installs the fix)
from dynasor_sgl.lang import threads


class Backend:
    def __init__(self) -> None:
        self.ended: list[Any] = []

    def end_program(self, executor: Any) -> None:
        self.ended.append(executor)


class Worker:
    """A thread stand-in that fails the test if asked whether it lives."""

    def is_alive(self) -> bool:
        raise AssertionError("end() asked is_alive()")


def executor(worker: Any) -> Any:
    ex = object.__new__(StreamExecutor)
    ex.use_thread, ex.queue, ex.worker, ex.backend = True, queue.Queue(), worker, Backend()
    return ex


def test_end_queues_the_stop_marker_without_asking_the_thread() -> None:
    ex = executor(Worker())
    ex.end()
    ex.end()  # twice, as an explicit end and the finalizer do: two inert markers
    assert [ex.queue.get_nowait(), ex.queue.get_nowait()] == [None, None]
    assert ex.backend.ended == [ex, ex]


def test_end_still_stops_a_live_worker() -> None:
    ex = executor(None)
    seen: list[Any] = []

    def work() -> None:
        while (item := ex.queue.get()) is not None:
            seen.append(item)

    ex.worker = threading.Thread(target=work)
    ex.worker.start()
    ex.queue.put("expr")
    ex.end()
    ex.worker.join(10)
    assert not ex.worker.is_alive() and seen == ["expr"]


def test_install_is_idempotent() -> None:
    threads.install()
    threads.install()
    assert StreamExecutor.end is threads._end
