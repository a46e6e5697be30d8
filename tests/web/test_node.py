"""WebNode with the clients it builds itself from its config: unreachable inner nodes become ret 65535."""
from __future__ import annotations

import httpx

from tests.helpers import free_port
from web.config import load
from web.node import WebNode


async def test_node_built_from_config_maps_unreachable_nodes_to_65535() -> None:
    public, admin, nothing = free_port(), free_port(), free_port()  # nothing listens on `nothing`
    config = load(None, {
        "public": {"bind": [f"127.0.0.1:{public}"]},
        "admin": {"bind": [f"127.0.0.1:{admin}"]},
        "comets": {"c1": {"rpc": [f"127.0.0.1:{nothing}"], "ws": ["127.0.0.1:6968"]}},
        "message": {"rpc": f"127.0.0.1:{nothing}", "timeout": 1.0},
        "rpc": {"comet_timeout": 1.0},
    })
    node = WebNode(config)
    await node.start()
    try:
        async with httpx.AsyncClient(timeout=10.0) as http:
            reply = (await http.get(f"http://127.0.0.1:{public}/1/server/get", params={"k": "a", "p": "1"})).json()
            assert reply == {"ret": 0, "msg": "ok", "data": {"server": "127.0.0.1:6968"}}
            reply = (await http.get(f"http://127.0.0.1:{public}/1/msg/get", params={"k": "a", "m": "0"})).json()
            assert reply == {"ret": 65535, "msg": "internal error"}
            response = await http.post(f"http://127.0.0.1:{admin}/push/private", params={"key": "a", "expire": "0"},
                                       content=b"1")
            assert response.status_code == 200 and response.json() == {"ret": 65535, "msg": "internal error"}
            response = await http.post(f"http://127.0.0.1:{admin}/push/mprivate", params={"expire": "0"},
                                       content=b'{"m": "1", "k": "a,b"}')
            assert response.status_code == 200 and response.json()["data"] == {"fk": ["a", "b"]}
    finally:
        await node.stop()
    assert node.view is None  # the node closed the view it built
