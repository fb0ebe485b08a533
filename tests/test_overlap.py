"""outgoing.overlap.overlapped: batch N+1 is prepared while batch N is sent, one send at a time,
in order; a failed send stops the loop (the batch prepared meanwhile is discarded, never sent);
the stop flag ends it after the send in flight. Pure logic: real threads, no fakes of the code."""

from __future__ import annotations

import threading

import pytest

from dunningops.outgoing.overlap import overlapped


def test_sends_in_order_one_at_a_time_and_skips_none():
    sent: list[int] = []
    running = threading.Semaphore(1)

    def send(p: int) -> None:
        assert running.acquire(blocking=False), "two sends in flight"
        try:
            sent.append(p)
        finally:
            running.release()

    overlapped(range(10), lambda i: None if i % 3 == 0 else i * 10, send)
    assert sent == [10, 20, 40, 50, 70, 80]


def test_the_next_batch_is_prepared_while_one_is_sent():
    # Send 0 finishes only once item 1 is being prepared: the loop would hang if it took turns.
    preparing_1 = threading.Event()
    order: list[str] = []

    def prepare(i: int) -> int:
        order.append(f"prepare {i}")
        if i == 1:
            preparing_1.set()
        return i

    def send(p: int) -> None:
        if p == 0:
            assert preparing_1.wait(5), "batch 1 was not prepared while batch 0 was sent"
        order.append(f"send {p}")
        assert threading.current_thread() is not threading.main_thread()

    overlapped(range(3), prepare, send)
    assert order.index("prepare 1") < order.index("send 0")
    assert [o for o in order if o.startswith("send")] == ["send 0", "send 1", "send 2"]


def test_a_failed_send_stops_the_loop_and_discards_what_was_prepared():
    sent, discarded, prepared = [], [], []

    def prepare(i: int) -> int:
        prepared.append(i)
        return i

    def send(p: int) -> None:
        if p == 1:
            raise RuntimeError("the server refused us")
        sent.append(p)

    with pytest.raises(RuntimeError, match="refused"):
        overlapped(range(10), prepare, send, discard=discarded.append)
    assert sent == [0] and discarded == [2] and prepared == [0, 1, 2]


def test_a_failed_prepare_lets_the_send_in_flight_finish():
    finished = threading.Event()

    def prepare(i: int) -> int:
        if i == 1:
            raise ValueError("cannot render")
        return i

    def send(p: int) -> None:
        finished.wait(0.2)
        finished.set()

    with pytest.raises(ValueError):
        overlapped(range(3), prepare, send)
    assert finished.is_set()  # raised only after send 0 ended (the pool waited for it)


def test_the_stop_flag_ends_the_loop_after_the_send_in_flight():
    stop = threading.Event()
    sent: list[int] = []

    def send(p: int) -> None:
        sent.append(p)
        if p == 2:
            stop.set()

    overlapped(range(100), lambda i: i, send, stopped=stop.is_set)
    # Asked before each item is prepared: item 3 may be prepared while 2 is sent, nothing after it.
    assert sent[:3] == [0, 1, 2] and len(sent) <= 4
