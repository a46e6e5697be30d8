"""comet.client.CometNodeInfo: the published node JSON, round trip and validation."""
import json

import pytest

from comet.client import CometNodeInfo, PushResult


def test_round_trip():
    info = CometNodeInfo(name="node1", weight=2, rpc=["127.0.0.1:6970"], tcp=["10.0.0.1:6969"],
                         ws=["[::1]:6968"])
    data = info.to_json()
    assert json.loads(data) == {"name": "node1", "weight": 2, "rpc": ["127.0.0.1:6970"],
                                "tcp": ["10.0.0.1:6969"], "ws": ["[::1]:6968"]}
    assert CometNodeInfo.from_json(data) == info


def test_design_znode_schema_with_the_name_from_the_path():
    data = b'{"rpc": ["127.0.0.1:6970"], "tcp": [], "ws": ["127.0.0.1:6968"], "weight": 1}'
    assert CometNodeInfo.from_json(data, name="node3") == CometNodeInfo("node3", 1, ["127.0.0.1:6970"], [],
                                                                        ["127.0.0.1:6968"])


@pytest.mark.parametrize("data", [
    b"not json", b"[]", b"\xff", b'{"weight": 1}', b'{"name": "", "weight": 1}',
    b'{"name": "n", "weight": 0}', b'{"name": "n", "weight": true}', b'{"name": "n", "rpc": "127.0.0.1:1"}',
    b'{"name": "n", "tcp": [1]}', b'{"name": "n", "ws": ["no-port"]}',
])
def test_invalid_node_info(data):
    with pytest.raises(ValueError):
        CometNodeInfo.from_json(data)


def test_push_result_is_a_value():
    assert PushResult(mid=1, online=2) == PushResult(1, 2)
