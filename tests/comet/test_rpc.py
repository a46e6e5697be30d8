"""CometRPC over a real RpcServer: parameter checks, error codes, Ping, Stat, Close; and the stat listener."""
import httpx
import pytest

from comet.__main__ import main
from comet.protocol import REPLY_OK
from tests.comet.clients import TcpSub, WsSub
from thirdparty.rpc_client import RemoteError, RpcClient

MSG = b'{"a":1}'


@pytest.fixture
async def raw_rpc(node):
    client = RpcClient(node.addresses["rpc"][0], timeout=3.0)
    yield client
    await client.close()


@pytest.mark.parametrize("method, params", [
    ("CometRPC.PushPrivate", [1, MSG, 60]),               # key not a string
    ("CometRPC.PushPrivate", ["", MSG, 60]),              # empty key
    ("CometRPC.PushPrivate", ["k" * 129, MSG, 60]),       # key too long
    ("CometRPC.PushPrivate", ["a\nb", MSG, 60]),          # control character
    ("CometRPC.PushPrivate", ["k", b"{not json", 60]),    # msg not JSON
    ("CometRPC.PushPrivate", ["k", b"NaN", 60]),          # not JSON either
    ("CometRPC.PushPrivate", ["k", b"\xff", 60]),         # not UTF-8
    ("CometRPC.PushPrivate", ["k", b"", 60]),             # empty
    ("CometRPC.PushPrivate", ["k", b'"' + b"x" * 65536 + b'"', 60]),  # too big
    ("CometRPC.PushPrivate", ["k", 5, 60]),               # msg of the wrong type
    ("CometRPC.PushPrivate", ["k", MSG, -1]),             # negative expire
    ("CometRPC.PushPrivate", ["k", MSG, "60"]),           # expire not an int
    ("CometRPC.PushPrivate", ["k", MSG, True]),           # a bool is not an int
    ("CometRPC.PushPrivate", ["k", MSG]),                 # missing param
    ("CometRPC.PushPrivates", ["k", MSG, 60]),            # keys not a list
    ("CometRPC.PushPrivates", [["k", 1], MSG, 60]),       # a key not a string
    ("CometRPC.PushPrivates", [["k"] * 1001, MSG, 60]),   # too many keys
    ("CometRPC.Close", [7]),
    ("CometRPC.Nope", []),
])
async def test_bad_params_are_65534_before_any_io(node, raw_rpc, method, params):
    with pytest.raises(RemoteError) as info:
        await raw_rpc.call(method, *params)
    assert info.value.code == 65534
    assert node.fake.calls == []


async def test_str_message_is_accepted(node, raw_rpc):
    assert await raw_rpc.call("CometRPC.PushPrivate", "k", '{"a":"é"}', 0) == {"mid": 1000, "online": 0}


async def test_push_privates_wire_shape(node, raw_rpc, clients):
    client, _ = await clients.open(TcpSub, node, "k1", version="1")
    reply = await raw_rpc.call("CometRPC.PushPrivates", ["k1", "k2", ""], MSG, 60)
    assert reply == {"fk": [""], "online": 1}
    await client.recv_frame()


async def test_message_node_errors_keep_their_code(node):
    class Refusing(type(node.fake)):
        async def save_private(self, key, msg, expire):
            raise RemoteError(65534, "expire must be 0..2592000 seconds")

    node.service.message = Refusing()
    with pytest.raises(RemoteError) as info:
        await node.rpc.push_private("k", MSG, 10**9)
    assert info.value.code == 65534


async def test_ping_and_stat(node, clients):
    await node.rpc.ping()
    tcp, _ = await clients.open(TcpSub, node, "s1")
    ws, _ = await clients.open(WsSub, node, "s1")
    await clients.open(WsSub, node, "s2", heartbeat=1)  # refused: -p
    await node.rpc.push_private("s1", MSG, 60)
    stat = await node.rpc.stat()
    assert stat["node"] == "node1"
    assert stat["connections"] == {"tcp": 1, "ws": 1}
    assert stat["subscribes"] == {"tcp": 1, "ws": 1}
    assert stat["refusals"] == {"-p": 1}
    assert stat["pushes"] == 1 and stat["deliveries"] == 2
    assert stat["keys"] == 1
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(f"http://{node.addresses['stat'][0]}/stat")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["connections"] == {"tcp": 1, "ws": 1}


async def test_node_info_advertises_reachable_addresses(node, start_node):
    info = node.info()
    assert info.name == "node1" and info.weight == 1
    assert info.tcp == node.addresses["tcp"] and info.ws == node.addresses["ws"]
    assert info.rpc == node.addresses["rpc"]
    other = await start_node(advertise={"tcp": ["push.example.com:6969"], "ws": []})
    assert other.info().tcp == ["push.example.com:6969"]
    assert other.info().ws == other.addresses["ws"]


async def test_subscribe_reply_still_ok_after_rpc_errors(node, clients, raw_rpc):
    with pytest.raises(RemoteError):
        await raw_rpc.call("CometRPC.PushPrivate", 1, MSG, 60)
    assert (await clients.open(TcpSub, node, "fine"))[1] == REPLY_OK


def test_main_refuses_a_bad_config(tmp_path):
    path = tmp_path / "comet.conf"
    path.write_text("[limits]\nmax_queue = 0\n")
    assert main(["-c", str(path)]) == 2
