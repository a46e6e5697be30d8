"""message.mid: time ids, the fixed-width mid prefix and the stored member codec (pure)."""
import msgpack
import pytest

from message import mid as mids

NOW_MID = 17_000_000_000_000_000  # ~2023 in 100 ns units: above 2**53, where doubles skip odd integers


def test_time_id_is_100ns_units():
    assert mids.time_id(1_700_000_000_123_456_789) == 17_000_000_001_234_567
    assert mids.time_id(99) == 0


def test_prefix_is_19_digits_and_round_trips():
    for mid in (0, 1, NOW_MID, mids.MAX_MID):
        prefix = mids.mid_prefix(mid)
        assert len(prefix) == mids.MID_DIGITS == 19
        assert mids.parse_mid_prefix(prefix + b"tail") == mid


@pytest.mark.parametrize("mid", [-1, mids.MAX_MID + 1])
def test_prefix_rejects_non_int64(mid):
    with pytest.raises(ValueError):
        mids.mid_prefix(mid)


def test_prefix_bytes_sort_like_numbers_where_doubles_cannot_tell():
    neighbours = [NOW_MID + 1, NOW_MID, 9, NOW_MID + 2, 10, mids.MAX_MID]
    assert float(NOW_MID) == float(NOW_MID + 1)  # the reason the exact mid lives in the member
    assert sorted(neighbours, key=mids.mid_prefix) == sorted(neighbours)


def test_member_round_trip_and_layout():
    member = mids.encode_member(NOW_MID + 1, b'{"a":1}', 1_700_000_600)
    assert member.startswith(b"0017000000000000001")
    assert msgpack.unpackb(member[19:]) == {"msg": b'{"a":1}', "expire": 1_700_000_600}
    stored = mids.decode_member(member)
    assert stored == mids.StoredMessage(NOW_MID + 1, b'{"a":1}', 1_700_000_600)


def test_equal_payloads_make_distinct_members():
    assert mids.encode_member(NOW_MID, b"same", 5) != mids.encode_member(NOW_MID + 1, b"same", 5)


def test_expire_at_gives_at_least_the_asked_lifetime():
    saved_ns = 1_700_000_000_900_000_000  # .9 s into a second
    last = mids.expire_at(saved_ns, 10)
    stored = mids.StoredMessage(1, b"", last)
    assert not stored.expired(1_700_000_010)  # 9.1 s later (rounded down): still delivered
    assert not stored.expired(last)
    assert stored.expired(last + 1)


@pytest.mark.parametrize("member", [
    b"",
    b"12345",                                       # shorter than the prefix
    b"00000000000000000x1" + msgpack.packb({"msg": b"", "expire": 1}),
    b"0000000000000000001" + b"\xc1",               # not msgpack
    b"0000000000000000001" + msgpack.packb([1, 2]),  # not a map
    b"0000000000000000001" + msgpack.packb({"msg": "text", "expire": 1}),
    b"0000000000000000001" + msgpack.packb({"msg": b"", "expire": True}),
    b"0000000000000000001" + msgpack.packb({"msg": b""}),
])
def test_decode_rejects_foreign_members(member):
    with pytest.raises(mids.MemberError):
        mids.decode_member(member)
