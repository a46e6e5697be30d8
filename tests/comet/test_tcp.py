"""TCP-only behaviour: the subscribe command over a real socket, split and merged."""
import asyncio

from comet.protocol import REPLY_OK, REPLY_PARAM
from tests.comet.clients import TcpSub, sub_command
from tests.helpers import eventually

DESIGN_EXAMPLE = b"*5\r\n$3\r\nsub\r\n$9\r\nTerry-Mao\r\n$2\r\n30\r\n$0\r\n\r\n$3\r\n1.0\r\n"


async def test_design_example_split_byte_by_byte(node, clients):
    client = clients.add(await TcpSub.connect(node))
    for i in range(len(DESIGN_EXAMPLE)):
        await client.send_raw(DESIGN_EXAMPLE[i:i + 1])
        await asyncio.sleep(0)
    assert await client.reply() == REPLY_OK
    result = await node.rpc.push_private("Terry-Mao", b'{"a":1}', 60)
    assert await client.recv_frame() == b'$34\r\n{"msg":{"a":1},"mid":%d,"gid":0}\r\n' % result.mid


async def test_heartbeats_merged_with_the_command(node, clients):
    client = clients.add(await TcpSub.connect(node))
    await client.send_raw(DESIGN_EXAMPLE + b"hh")
    assert await asyncio.wait_for(client.reader.readexactly(12), 3) == REPLY_OK * 3


async def test_garbage_after_the_command_closes(node, clients):
    client = clients.add(await TcpSub.connect(node))
    await client.send_raw(DESIGN_EXAMPLE + b"hx")
    assert await client.closed_by_server() == REPLY_OK  # the +h of the subscribe; the bad chunk is not answered
    await eventually(lambda: node.table.connection_count == 0)


async def test_wrong_command_and_oversized_argument(node, clients):
    for data in (sub_command(b"pub", b"k", b"30"), b"*1\r\n$5000\r\n", b"*6\r\n", b"PING\r\n"):
        client = clients.add(await TcpSub.connect(node))
        await client.send_raw(data)
        assert await client.closed_by_server() == REPLY_PARAM
    assert node.stats.refusals["-p"] == 4


async def test_connections_are_forgotten(node, clients):
    for _ in range(3):
        client = clients.add(await TcpSub.connect(node))
        await client.send_raw(sub_command(b"sub", b"temp", b"30"))
        assert await client.reply() == REPLY_OK
        await client.close()
    await eventually(lambda: node.table.connection_count == 0 and node.table.channel_count == 0)
    await eventually(lambda: node.stats.closes["client closed"] == 3)
    assert node.stats.connections["tcp"] == 0 and node.stats.subscribes["tcp"] == 3
