"""thirdparty.rate_limit: the per-address cap, the token bucket, address grouping and forgetting addresses."""
import pytest

from thirdparty.rate_limit import (
    UNTRACKED, AddressLimiter, AddressSlot, Refused, address_group, parse_networks,
)


def test_cap_refuses_the_extra_connection_until_one_closes():
    limiter = AddressLimiter(max_conns=2)
    first, second = limiter.acquire("10.0.0.1", 0), limiter.acquire("10.0.0.1", 0)
    assert isinstance(first, AddressSlot) and first is second and first.count == 2
    assert limiter.acquire("10.0.0.1", 0) is Refused.CONNS
    assert isinstance(limiter.acquire("10.0.0.2", 0), AddressSlot)  # another address is not affected
    limiter.release(first, 1)
    assert limiter.acquire("10.0.0.1", 1) is first and first.count == 2


def test_an_address_without_connections_is_forgotten():
    limiter = AddressLimiter(max_conns=5)
    slots = [limiter.acquire("10.0.0.1", 0) for _ in range(3)]
    assert len(limiter) == 1 and limiter.open_count("10.0.0.1") == 3
    for slot in slots:
        assert isinstance(slot, AddressSlot)
        limiter.release(slot, 0)
    assert len(limiter) == 0 and limiter.open_count("10.0.0.1") == 0
    limiter.release(slots[0], 0)  # a second release of a gone slot changes nothing
    assert len(limiter) == 0


def test_bucket_allows_a_burst_then_the_rate():
    limiter = AddressLimiter(rate=2.0, burst=3)
    assert all(isinstance(limiter.acquire("10.0.0.1", 0), AddressSlot) for _ in range(3))
    assert limiter.acquire("10.0.0.1", 0) is Refused.RATE
    assert limiter.acquire("10.0.0.1", 0.25) is Refused.RATE   # half a token
    assert isinstance(limiter.acquire("10.0.0.1", 0.5), AddressSlot)  # one token back after 0.5 s at 2/s
    assert limiter.acquire("10.0.0.1", 0.5) is Refused.RATE
    assert isinstance(limiter.acquire("10.0.0.9", 0.5), AddressSlot)


def test_refused_attempts_take_nothing():
    limiter = AddressLimiter(rate=1.0, burst=1)
    assert isinstance(limiter.acquire("10.0.0.1", 0), AddressSlot)
    for step in range(9):
        assert limiter.acquire("10.0.0.1", step / 10) is Refused.RATE
    assert isinstance(limiter.acquire("10.0.0.1", 1.0), AddressSlot)


def test_closing_connections_does_not_refill_the_bucket():
    """A client that opens and closes in a loop is limited like one that keeps its connections."""
    limiter = AddressLimiter(rate=0.5, burst=2)
    for _ in range(2):
        slot = limiter.acquire("10.0.0.1", 0)
        assert isinstance(slot, AddressSlot)
        limiter.release(slot, 0)
    assert limiter.acquire("10.0.0.1", 0.1) is Refused.RATE
    assert len(limiter) == 1  # remembered while its bucket refills


def test_sweep_forgets_idle_addresses_once_their_bucket_is_full():
    limiter = AddressLimiter(rate=1.0, burst=2)
    idle = limiter.acquire("10.0.0.1", 0)
    busy = limiter.acquire("10.0.0.2", 0)
    assert isinstance(idle, AddressSlot) and isinstance(busy, AddressSlot)
    limiter.release(idle, 0)
    assert limiter.sweep(0.5) == 0 and len(limiter) == 2
    assert limiter.sweep(1.0) == 1 and len(limiter) == 1  # 1 s at 1/s: full again
    assert limiter.open_count("10.0.0.2") == 1
    assert limiter.sweep(100) == 0 and len(limiter) == 1  # an address with a connection is never swept


def test_an_idle_address_that_connects_again_is_not_swept():
    limiter = AddressLimiter(rate=1.0, burst=2)
    slot = limiter.acquire("10.0.0.1", 0)
    assert isinstance(slot, AddressSlot)
    limiter.release(slot, 0)
    again = limiter.acquire("10.0.0.1", 0.2)
    assert again is slot and slot.count == 1
    assert limiter.sweep(100) == 0 and limiter.open_count("10.0.0.1") == 1
    limiter.release(again, 100)  # bucket full by then: forgotten at once
    assert len(limiter) == 0


def test_cap_and_rate_together():
    limiter = AddressLimiter(max_conns=2, rate=1.0, burst=5)
    slots = [limiter.acquire("10.0.0.1", 0) for _ in range(2)]
    assert limiter.acquire("10.0.0.1", 0) is Refused.CONNS
    assert isinstance(slots[0], AddressSlot)
    limiter.release(slots[0], 0)
    assert isinstance(limiter.acquire("10.0.0.1", 0), AddressSlot)
    assert slots[0].tokens == pytest.approx(2.0)  # the refused attempt took no token


@pytest.mark.parametrize("host, group", [
    ("10.1.2.3", "10.1.2.3"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:10.1.2.3", "10.1.2.3"),
    ("fe80::1%eth0", "fe80::/64"),
    ("not-an-address:x", "not-an-address:x"),
])
def test_address_groups(host, group):
    assert address_group(host) == group


def test_one_ipv6_subscriber_line_shares_the_cap():
    limiter = AddressLimiter(max_conns=2)
    assert isinstance(limiter.acquire("2001:db8::1", 0), AddressSlot)
    assert isinstance(limiter.acquire("2001:db8::2", 0), AddressSlot)
    assert limiter.acquire("2001:db8::3", 0) is Refused.CONNS
    assert isinstance(limiter.acquire("2001:db8:0:1::3", 0), AddressSlot)


def test_exempt_networks_are_neither_limited_nor_tracked():
    limiter = AddressLimiter(max_conns=1, rate=1.0, burst=1, exempt=parse_networks(["127.0.0.0/8", "::1"]))
    for host in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1") * 3:
        assert limiter.acquire(host, 0) is UNTRACKED
    assert len(limiter) == 0
    limiter.release(UNTRACKED, 0)
    assert isinstance(limiter.acquire("10.0.0.1", 0), AddressSlot)
    assert limiter.acquire("10.0.0.1", 0) is Refused.CONNS


def test_a_limiter_without_limits_tracks_nothing():
    limiter = AddressLimiter()
    assert not limiter.enabled
    assert limiter.acquire("10.0.0.1", 0) is UNTRACKED and len(limiter) == 0


@pytest.mark.parametrize("kwargs", [{"max_conns": -1}, {"rate": 1.0}, {"burst": 5}, {"rate": -1.0, "burst": 1}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        AddressLimiter(**kwargs)


def test_parse_networks_names_the_bad_entry():
    assert [str(net) for net in parse_networks(["10.0.0.0/8", "::1", "192.168.1.7/24"])] == \
        ["10.0.0.0/8", "::1/128", "192.168.1.0/24"]
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        parse_networks(["10.0.0.300"])
