"""The wire protocol, pure: sizes, authentication, binding of replies to probes, replay window."""

from __future__ import annotations

import itertools

import pytest

from edgecheck.reach import protocol as wire
from edgecheck.reach.protocol import Endpoint, Verdict

TOKEN = "s3cret-token-for-tests"
KEY = wire.derive_key(TOKEN)
NOW_MS = 1_700_000_000_000


def _counter_bytes():
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def _probe(key: bytes = KEY, port: int = 10250, protocol: str = "tcp", now_ms: int = NOW_MS) -> wire.Probe:
    return wire.build_probe(key, port, protocol, now_ms, randbytes=_counter_bytes())


def test_sizes_never_amplify() -> None:
    probe = _probe()
    parsed = wire.parse_probe(KEY, probe.wire)
    reply = wire.build_reply(KEY, parsed, Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 10250), "tcp", NOW_MS)
    assert len(probe.wire) == wire.REQUEST_SIZE == 128
    assert len(reply) == wire.REPLY_SIZE == 112
    assert len(reply) < len(probe.wire)
    stale = wire.build_reply(KEY, parsed, Endpoint("::1", 1), Endpoint("fd00::2", 2), "tcp", NOW_MS, stale=True)
    assert len(stale) == wire.REPLY_SIZE


def test_the_token_never_appears_on_the_wire() -> None:
    probe = _probe()
    parsed = wire.parse_probe(KEY, probe.wire)
    reply = wire.build_reply(KEY, parsed, Endpoint("10.0.0.1", 1), Endpoint("10.0.0.2", 2), "udp", NOW_MS)
    for blob in (probe.wire, reply):
        assert TOKEN.encode() not in blob
        assert KEY not in blob


def test_round_trip_carries_what_the_listener_saw() -> None:
    probe = _probe(port=8472, protocol="udp")
    parsed = wire.parse_probe(KEY, probe.wire)
    assert isinstance(parsed, wire.ParsedProbe)
    assert (parsed.aimed_port, parsed.protocol, parsed.sent_ms) == (8472, "udp", NOW_MS)
    reply = wire.build_reply(KEY, parsed, Endpoint("::ffff:192.0.2.7", 5555), Endpoint("fd00::2", 8472), "udp",
                             NOW_MS + 40)
    got = wire.parse_reply(KEY, reply, {probe.nonce: probe}.get)
    assert isinstance(got, wire.ParsedReply)
    assert got.seen_source == Endpoint("192.0.2.7", 5555)  # v4-mapped is spelled as IPv4
    assert got.seen_destination == Endpoint("fd00::2", 8472)
    assert (got.stale, got.protocol, got.listener_ms) == (False, "udp", NOW_MS + 40)


def test_wrong_token_fails_on_both_sides() -> None:
    other = wire.derive_key("another-token-entirely")
    probe = _probe()
    assert wire.parse_probe(other, probe.wire) == Verdict.BAD_TOKEN
    parsed = wire.parse_probe(KEY, probe.wire)
    forged = wire.build_reply(other, parsed, Endpoint("10.0.0.1", 1), Endpoint("10.0.0.2", 2), "tcp", NOW_MS)
    assert "does not verify" in wire.parse_reply(KEY, forged, {probe.nonce: probe}.get)


def test_every_tampered_byte_is_rejected() -> None:
    probe = _probe()
    for i in range(wire.REQUEST_SIZE):
        bad = bytearray(probe.wire)
        bad[i] ^= 0x01
        assert not isinstance(wire.parse_probe(KEY, bytes(bad)), wire.ParsedProbe), i
    parsed = wire.parse_probe(KEY, probe.wire)
    reply = wire.build_reply(KEY, parsed, Endpoint("10.0.0.1", 1), Endpoint("10.0.0.2", 2), "tcp", NOW_MS)
    for i in range(wire.REPLY_SIZE):
        bad = bytearray(reply)
        bad[i] ^= 0x01
        assert isinstance(wire.parse_reply(KEY, bytes(bad), {probe.nonce: probe}.get), str), i


def test_a_reply_answers_exactly_one_probe() -> None:
    first, second = _probe(), wire.build_probe(KEY, 10250, "tcp", NOW_MS, randbytes=lambda n: b"\x77" * n)
    parsed = wire.parse_probe(KEY, first.wire)
    reply = wire.build_reply(KEY, parsed, Endpoint("10.0.0.1", 1), Endpoint("10.0.0.2", 2), "tcp", NOW_MS)
    # A prober that never sent this nonce, or sent another probe with the same nonce, rejects it.
    assert "did not send" in wire.parse_reply(KEY, reply, {second.nonce: second}.get)
    lookalike = wire.Probe(second.wire, first.nonce, second.mac, second.sent_ms)
    assert "does not verify" in wire.parse_reply(KEY, reply, {first.nonce: lookalike}.get)


def test_an_echoed_probe_is_no_proof() -> None:
    """A middlebox or echo service that reflects our bytes must not pass."""
    probe = _probe()
    assert isinstance(wire.parse_reply(KEY, probe.wire, {probe.nonce: probe}.get), str)
    assert isinstance(wire.parse_reply(KEY, probe.wire[:wire.REPLY_SIZE], {probe.nonce: probe}.get), str)


@pytest.mark.parametrize("data, verdict", [
    (b"", Verdict.TRUNCATED),
    (b"GET / HTTP/1.1\r\n", Verdict.GARBAGE),
    (b"\x16\x03\x01\x02\x00", Verdict.GARBAGE),
    (wire.MAGIC + b"\x09\x01\x00\x00" + bytes(120), Verdict.BAD_VERSION),
    (wire.MAGIC + b"\x01\x02\x00\x00" + bytes(120), Verdict.BAD_TYPE),
    (wire.MAGIC + b"\x01\x01\x00\x01" + bytes(120), Verdict.GARBAGE),
])
def test_cheap_rejections(data: bytes, verdict: str) -> None:
    assert wire.parse_probe(KEY, data) == verdict


def test_size_rejections() -> None:
    probe = _probe()
    assert wire.parse_probe(KEY, probe.wire[:-1]) == Verdict.TRUNCATED
    assert wire.parse_probe(KEY, probe.wire[:10]) == Verdict.TRUNCATED
    assert wire.parse_probe(KEY, probe.wire + b"\0") == Verdict.OVERSIZED


def test_header_problem_judges_prefixes() -> None:
    probe = _probe()
    for n in range(0, wire.HEADER_SIZE + 1):
        assert wire.header_problem(probe.wire[:n]) is None
    assert wire.header_problem(b"\x8e") is None
    assert wire.header_problem(b"G") == Verdict.GARBAGE
    assert wire.header_problem(b"\x8eEC") is None
    assert wire.header_problem(b"\x8eEX") == Verdict.GARBAGE


def test_replay_guard_window_and_replays() -> None:
    guard = wire.ReplayGuard(window_s=300)
    parsed = wire.parse_probe(KEY, _probe().wire)
    assert guard.judge(parsed, NOW_MS + 1_000) == Verdict.VALID
    assert guard.judge(parsed, NOW_MS + 2_000) == Verdict.REPLAY
    assert guard.judge(parsed, NOW_MS + 301_000) == Verdict.STALE  # outside the window: STALE, not VALID
    early = wire.parse_probe(KEY, _probe(now_ms=NOW_MS + 400_000).wire)
    assert guard.judge(early, NOW_MS) == Verdict.STALE  # prober clock ahead


def test_replay_guard_is_bounded() -> None:
    guard = wire.ReplayGuard(window_s=300, max_entries=100)
    rb = _counter_bytes()
    for _ in range(1000):
        p = wire.parse_probe(KEY, wire.build_probe(KEY, 1, "udp", NOW_MS, randbytes=rb).wire)
        assert guard.judge(p, NOW_MS) == Verdict.VALID
    assert len(guard) == 100


def test_replay_guard_forgets_expired_nonces() -> None:
    guard = wire.ReplayGuard(window_s=1)
    rb = _counter_bytes()
    for i in range(50):
        p = wire.parse_probe(KEY, wire.build_probe(KEY, 1, "udp", NOW_MS + i, randbytes=rb).wire)
        guard.judge(p, NOW_MS + i)
    later = wire.parse_probe(KEY, wire.build_probe(KEY, 1, "udp", NOW_MS + 10_000, randbytes=rb).wire)
    guard.judge(later, NOW_MS + 10_000)
    assert len(guard) == 1


@pytest.mark.parametrize("token, ok", [
    ("short", False),
    ("x" * 12, True),
    ("x" * 129, False),
    ("has space in it!", False),
    ("semi;colon-token-x", False),
    ("Az09-_.~+/=Az09", True),
])
def test_token_problem(token: str, ok: bool) -> None:
    assert (wire.token_problem(token) is None) is ok


def test_new_tokens_are_valid_and_distinct() -> None:
    tokens = {wire.new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(wire.token_problem(t) is None and len(t) == 22 for t in tokens)


def test_fingerprint_differs_per_token_and_hides_it() -> None:
    a, b = wire.key_fingerprint(wire.derive_key("token-number-one")), wire.key_fingerprint(wire.derive_key("token-number-two"))
    assert a != b and len(a) == 8 and "token" not in a


@pytest.mark.parametrize("local, seen, kind", [
    (Endpoint("10.0.0.1", 4000), Endpoint("10.0.0.1", 4000), "none"),
    (Endpoint("10.0.0.1", 4000), Endpoint("10.0.0.1", 5000), "port"),
    (Endpoint("10.0.0.1", 4000), Endpoint("192.0.2.1", 4000), "address"),
    (Endpoint("::ffff:10.0.0.1", 4000), Endpoint("10.0.0.1", 4000), "none"),
    (None, Endpoint("10.0.0.1", 4000), None),
])
def test_nat_kind(local, seen, kind) -> None:
    assert wire.nat_kind(local, seen) == kind


def test_clock_offset_estimate() -> None:
    assert wire.clock_offset_s(1000, 1200, 1100) == 0.0
    assert wire.clock_offset_s(1000, 1200, 6100) == 5.0
