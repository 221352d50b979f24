"""The event queue: next_event() drains in linear time, events() takes everything at once.

The C fast paths append DataReceived events straight into the connection's list, so the queue
stays a list read from a head index; these tests check order, interleaving with new input and
that draining n events costs O(n).
"""

from __future__ import annotations

import gc
import time

import pytest
from helpers import drain_events, handshake, make_pair, received_data

from dtls_ossl import DtlsConnection, events

pytestmark = pytest.mark.timeout(120)


def _established() -> tuple[DtlsConnection, DtlsConnection, float]:
    client, server = make_pair()
    now = time.monotonic()
    handshake(client, server, now)
    assert isinstance(drain_events(client)[0], events.HandshakeCompleted)
    assert isinstance(drain_events(server)[0], events.HandshakeCompleted)
    return client, server, now


def _queue(
    client: DtlsConnection, server: DtlsConnection, now: float, payloads: list[bytes]
) -> None:
    """Queue one DataReceived per payload on the server, through the batch fast path."""
    for start in range(0, len(payloads), 5000):
        client.send_many(payloads[start : start + 5000], now)
        server.receive_datagrams(client.datagrams_to_send(now), now)


def test_next_event_keeps_order_while_new_input_arrives() -> None:
    client, server, now = _established()
    expected: list[bytes] = []
    got: list[bytes] = []
    counter = 0
    # Partial drains interleaved with new batches cross the compaction threshold many times.
    for round_ in range(40):
        batch = [
            counter.to_bytes(4, "big") + bytes(round_ % 7)
            for counter in range(counter, counter + 300)
        ]
        counter += 300
        expected += batch
        _queue(client, server, now, batch)
        for _ in range(250 if round_ % 3 else 299):
            ev = server.next_event()
            assert isinstance(ev, events.DataReceived)
            got.append(ev.data)
    got += received_data(server)
    assert got == expected
    assert server.next_event() is None
    assert server.events() == []


def test_events_drains_all_in_order_after_partial_next_event() -> None:
    client, server, now = _established()
    payloads = [i.to_bytes(3, "big") for i in range(1000)]
    _queue(client, server, now, payloads)
    first = [server.next_event() for _ in range(400)]
    rest = server.events()
    assert [e.data if isinstance(e, events.DataReceived) else e for e in first + rest] == payloads
    assert server.events() == []
    assert server.next_event() is None
    # The queue still works after a drain-all (the C path appends to the current list).
    _queue(client, server, now, [b"again", b"and again"])
    assert [type(e) for e in server.events()] == [events.DataReceived] * 2
    _queue(client, server, now, [b"x"])
    assert server.next_event() == events.DataReceived(b"x")
    assert server.next_event() is None


def test_events_includes_termination_last() -> None:
    client, server, now = _established()
    _queue(client, server, now, [b"a", b"b"])
    client.close(now)
    server.receive_datagrams(client.datagrams_to_send(now), now)
    evs = server.events()
    assert [type(e) for e in evs][:2] == [events.DataReceived, events.DataReceived]
    assert isinstance(evs[-1], events.ConnectionTerminated)
    assert evs[-1].by_peer


def _drain_seconds(n: int, runs: int = 5) -> float:
    """Time (min of ``runs``) for next_event() to drain n queued DataReceived events."""
    best = float("inf")
    client, server, now = _established()
    for _ in range(runs):
        _queue(client, server, now, [b"p"] * n)
        gc.disable()  # a collection in the timed loop is noise, not the queue's cost
        try:
            t0 = time.perf_counter()
            count = 0
            while server.next_event() is not None:
                count += 1
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
        assert count == n
    return best


def test_next_event_drains_in_linear_time() -> None:
    small = _drain_seconds(10_000)
    large = _drain_seconds(100_000)
    # Linear: ~10x. The old list.pop(0) was quadratic (~100x for 10x the events).
    assert large / small < 20, (small, large)
