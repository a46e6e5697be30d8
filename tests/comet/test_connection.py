"""comet.connection: the write accounting (no futures; writes counted only while the transport has a backlog).

The transport here is a small fake with asyncio's flow-control contract (the kernel takes ``room`` bytes, the
rest is buffered; ``pause_writing`` when bytes stay behind with high water 0, ``resume_writing`` once drained),
so that the kernel's pace is under the test's control. Over real sockets the same rule is tested in
test_transports.py (test_queue_overflow_closes_only_the_slow_connection).
"""
import pytest

from comet.channel import ChannelTable
from comet.connection import ClientContext
from comet.heartbeat import Deadlines, TimerWheel
from comet.message_codec import FORM_TCP_NEW, EncodedMessage
from comet.protocol import DEFAULT_LIMITS
from comet.service import CometService
from comet.stat import CometStats
from comet.tcp import TcpConnection
from tests.comet.fakes import FakeMessage
from thirdparty.ring import Ring


class FakeTransport:
    def __init__(self, protocol, room):
        self.protocol = protocol
        self.room = room          # bytes the kernel still takes at once
        self.buffered = 0
        self.sent = b""
        self.high = None
        self.paused = False
        self.aborted = False
        self.pending = b""

    def set_write_buffer_limits(self, high=None, low=None):
        self.high = high

    def get_write_buffer_size(self):
        return len(self.pending)

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 5555) if name == "peername" else default

    def write(self, data):
        if not self.pending:
            taken = min(self.room, len(data))
            self.room -= taken
            self.sent += data[:taken]
            data = data[taken:]
        self.pending += data
        if len(self.pending) > self.high and not self.paused:
            self.paused = True
            self.protocol.pause_writing()

    def drain(self, size):
        """The kernel takes ``size`` more bytes of the backlog."""
        self.sent += self.pending[:size]
        self.pending = self.pending[size:]
        if not self.pending and self.paused:
            self.paused = False
            self.protocol.resume_writing()

    def abort(self):
        self.aborted = True

    def close(self):
        self.aborted = True

    def is_closing(self):
        return self.aborted


def connection(max_queue, room):
    service = CometService(node_name="node1", ring=Ring({"node1": 1}), table=ChannelTable(4), message=FakeMessage(),
                           stats=CometStats("node1"), max_key_bytes=128, max_message_bytes=65536,
                           max_keys_per_push=10)
    deadlines = Deadlines(TimerWheel(1.0), lambda: 0.0, first_packet_timeout=5, heartbeat_grace=5)
    conn = TcpConnection(ClientContext(service, deadlines, DEFAULT_LIMITS, max_queue=max_queue, max_ws_frame=64))
    transport = FakeTransport(conn, room)
    conn.connection_made(transport)
    conn.form = FORM_TCP_NEW
    assert transport.high == 0
    return conn, transport


MESSAGE = EncodedMessage(b'{"n":1}', 7)


def test_writes_the_kernel_takes_are_never_counted():
    conn, transport = connection(max_queue=2, room=10**9)
    for _ in range(100):
        assert conn.send(MESSAGE)
    assert transport.sent == MESSAGE.new_frame * 100 and not transport.aborted


def test_max_queue_unsent_writes_then_the_next_one_closes():
    conn, transport = connection(max_queue=3, room=5)  # the first write is taken in part
    assert [conn.send(MESSAGE) for _ in range(4)] == [True, True, True, False]
    assert transport.aborted and conn.close_reason == "queue overflow"
    assert not conn.send(MESSAGE)


def test_flushed_writes_leave_the_count():
    size = len(MESSAGE.new_frame)
    conn, transport = connection(max_queue=3, room=0)
    assert conn.send(MESSAGE) and conn.send(MESSAGE)  # 2 unsent
    transport.drain(size + 1)  # the first is out, the second in part
    assert conn.send(MESSAGE) and conn.send(MESSAGE)  # 3 unsent: the second, third, fourth
    assert not conn.send(MESSAGE)
    assert transport.aborted


def test_a_drained_backlog_goes_back_to_the_fast_path():
    conn, transport = connection(max_queue=2, room=0)
    assert conn.send(MESSAGE) and conn.send(MESSAGE)
    transport.drain(10**6)
    transport.room = 10**9
    assert all(conn.send(MESSAGE) for _ in range(50))
    assert transport.sent == MESSAGE.new_frame * 52 and not transport.aborted


@pytest.mark.parametrize("reason", ["closed by rpc", "node stopping"])
def test_a_closing_connection_refuses_writes(reason):
    conn, transport = connection(max_queue=2, room=10**9)
    conn.close(reason)
    assert transport.aborted and not conn.send(MESSAGE) and not conn.write(b"+h\r\n")
