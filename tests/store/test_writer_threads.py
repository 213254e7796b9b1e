"""The writer threads under both group commits: batches, lingering, stopping."""

from __future__ import annotations

import threading
import time

from store.writer_threads import WriterThreads


class Recorder:
    def __init__(self, *, gate: threading.Event | None = None, fail_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.threads: list[str] = []
        self._gate = gate
        self._fail = fail_first
        self.done = threading.Condition()

    def handle(self, batch: list[int]) -> None:
        if self._gate is not None:
            self._gate.wait(10)
        with self.done:
            self.threads.append(threading.current_thread().name)
            if self._fail:
                self._fail = False
                raise RuntimeError("a bug in the owner's handler")
            self.batches.append(batch)
            self.done.notify_all()

    def wait_for(self, count: int) -> list[int]:
        with self.done:
            assert self.done.wait_for(lambda: sum(map(len, self.batches)) >= count, 10)
            return [item for batch in self.batches for item in batch]


def _busy(first: int, *, max_batch: int) -> tuple[Recorder, WriterThreads[int], threading.Event]:
    """A started writer that has taken [first] and holds it until the gate is set."""
    gate = threading.Event()
    seen = Recorder(gate=gate)
    writer = WriterThreads(seen.handle, name="test-writer", max_batch=max_batch)
    writer.start()
    writer.put([first])
    time.sleep(0.05)
    return seen, writer, gate


def test_what_queues_while_a_batch_is_written_goes_in_the_next_oldest_first() -> None:
    seen, writer, gate = _busy(0, max_batch=3)
    writer.put(range(1, 8))
    gate.set()

    assert seen.wait_for(8) == list(range(8))
    assert seen.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
    for thread in writer.stop():
        thread.join(10)
        assert not thread.is_alive()


def test_stopping_writes_what_is_queued_first() -> None:
    seen, writer, gate = _busy(1, max_batch=100)
    writer.put([2, 3])
    threads = writer.stop()
    gate.set()
    for thread in threads:
        thread.join(10)

    assert seen.wait_for(3) == [1, 2, 3]


def test_a_lingering_writer_ends_when_idle_and_the_next_put_starts_another() -> None:
    seen = Recorder()
    writer = WriterThreads(seen.handle, name="test-lingering", max_batch=10, linger=0.05)
    writer.put([1])  # no start(): the put starts it
    assert seen.wait_for(1) == [1]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
            t.name.startswith("test-lingering") for t in threading.enumerate()):
        time.sleep(0.01)
    assert not any(t.name.startswith("test-lingering") for t in threading.enumerate())

    writer.put([2])
    assert seen.wait_for(2) == [1, 2]
    assert len(seen.threads) == 2


def test_a_handler_that_raises_loses_its_batch_not_the_thread() -> None:
    seen = Recorder(fail_first=True)
    writer = WriterThreads(seen.handle, name="test-writer", max_batch=10)
    writer.start()
    writer.put([1])
    time.sleep(0.05)
    writer.put([2])

    assert seen.wait_for(1) == [2]
    assert len(set(seen.threads)) == 1  # the same thread went on
    for thread in writer.stop():
        thread.join(10)
