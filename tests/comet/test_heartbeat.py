"""comet.heartbeat: the timer wheel with an explicit clock (no sleeping)."""
import pytest

from comet.heartbeat import Deadlines, TimerWheel


class Item:
    def __init__(self, name):
        self.name = name
        self.timeouts = 0

    def on_timeout(self):
        self.timeouts += 1

    def __repr__(self):
        return self.name


def test_expires_at_deadline_never_early():
    wheel = TimerWheel(0.5, now=100.0)
    a = Item("a")
    wheel.schedule(a, 102.0)
    assert wheel.tick(101.9) == []
    assert wheel.tick(102.0) == [a]
    assert len(wheel) == 0
    assert wheel.tick(200.0) == []


def test_fires_at_most_one_resolution_late():
    wheel = TimerWheel(1.0, now=0.0)
    a = Item("a")
    wheel.schedule(a, 10.2)
    assert wheel.tick(10.5) == []  # not before the deadline ...
    assert wheel.tick(11.0) == [a]  # ... and by the end of its slot


def test_lazy_rescheduling_when_the_deadline_moves_later():
    wheel = TimerWheel(0.5, now=0.0)
    a = Item("a")
    wheel.schedule(a, 5.0)
    for now in (1.0, 2.0, 3.0, 4.0):  # a heartbeat every second pushes the deadline on
        assert wheel.tick(now) == []
        wheel.schedule(a, now + 5.0)
    assert wheel.tick(8.9) == []
    assert wheel.deadline(a) == 9.0
    assert wheel.tick(9.0) == [a]


def test_moving_a_deadline_earlier_refiles_at_once():
    wheel = TimerWheel(0.5, now=0.0)
    a = Item("a")
    wheel.schedule(a, 100.0)
    wheel.schedule(a, 1.0)
    assert wheel.tick(1.0) == [a]


def test_cancel_forgets_and_ignores_unknown():
    wheel = TimerWheel(0.5, now=0.0)
    a, b = Item("a"), Item("b")
    wheel.schedule(a, 1.0)
    wheel.schedule(b, 1.0)
    wheel.cancel(a)
    wheel.cancel(Item("never scheduled"))
    assert a not in wheel and b in wheel
    assert wheel.tick(5.0) == [b]


def test_past_deadline_expires_on_next_tick():
    wheel = TimerWheel(0.5, now=10.0)
    wheel.tick(10.0)
    a = Item("a")
    wheel.schedule(a, 3.0)
    assert wheel.tick(10.6) == [a]


def test_long_pause_and_many_items():
    wheel = TimerWheel(0.1, now=0.0)
    items = [Item(str(i)) for i in range(1000)]
    for i, item in enumerate(items):
        wheel.schedule(item, 1.0 + i)
    assert len(wheel.tick(500.05)) == 500  # deadlines 1..500
    assert len(wheel) == 500
    assert len(wheel.tick(1e6)) == 500  # a huge jump scans the filed slots, not every slot in between


def test_resolution_must_be_positive():
    with pytest.raises(ValueError):
        TimerWheel(0)


def test_deadlines_helper_calls_on_timeout():
    now = [0.0]
    deadlines = Deadlines(TimerWheel(0.5, now=0.0), lambda: now[0], first_packet_timeout=5.0, heartbeat_grace=5.0)
    fresh, subscribed = Item("fresh"), Item("subscribed")
    deadlines.first_packet(fresh)
    deadlines.first_packet(subscribed)
    deadlines.heartbeat(subscribed, 30)
    now[0] = 5.0
    assert deadlines.expire() == 1
    assert (fresh.timeouts, subscribed.timeouts) == (1, 0)
    now[0] = 20.0
    deadlines.heartbeat(subscribed, 30)  # a heartbeat at t=20: due by 55
    now[0] = 54.9
    assert deadlines.expire() == 0
    now[0] = 55.0
    assert deadlines.expire() == 1
    assert subscribed.timeouts == 1
    deadlines.cancel(subscribed)
