"""web.config: defaults, the comet list, the admin-exposure rule, conf/web.conf, and the entry point."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from thirdparty.confload import ConfigError
from thirdparty.runtime import CONFIG_ERROR
from web.__main__ import main
from web.config import WebConfig, is_loopback, load

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    config = load(None)
    assert config.public.bind == ["0.0.0.0:8090"]
    assert config.admin.bind == ["127.0.0.1:8091"] and config.admin.token == ""
    assert config.message.rpc == "127.0.0.1:7070" and config.message.timeout == 3.0
    assert config.limits.max_body_bytes == 65536 and config.limits.hard_body_cap == 131072
    assert (config.limits.max_key_bytes, config.limits.max_keys_per_push, config.limits.max_expire) == \
        (128, 1000, 2592000)
    [node] = config.comet_nodes()
    assert (node.name, node.weight, node.rpc, node.tcp, node.ws) == \
        ("node1", 1, ["127.0.0.1:6970"], ["127.0.0.1:6969"], ["127.0.0.1:6968"])


def test_shipped_conf_file_loads_to_the_defaults() -> None:
    assert load(str(ROOT / "conf" / "web.conf")) == WebConfig()


def test_comets_table(tmp_path: Path) -> None:
    path = tmp_path / "web.conf"
    path.write_text('[comets.a]\nrpc = ["10.0.0.1:6970"]\nweight = 2\nws = ["pub.example:443"]\n'
                    '[comets.b]\nrpc = ["10.0.0.2:6970"]\ntcp = ["10.0.0.2:6969"]\n')
    nodes = {node.name: node for node in load(str(path)).comet_nodes()}
    assert set(nodes) == {"a", "b"}
    assert (nodes["a"].weight, nodes["a"].ws, nodes["a"].tcp) == (2, ["pub.example:443"], [])
    assert nodes["b"].weight == 1 and nodes["b"].tcp == ["10.0.0.2:6969"]


@pytest.mark.parametrize("overrides", [
    {"comets": {"a": {"weight": 1}}},                          # rpc is required
    {"comets": {"a": {"rpc": []}}},
    {"comets": {"a": {"rpc": ["h:1"], "weight": 0}}},
    {"comets": {"a": {"rpc": ["nope"]}}},
    {"comets": {"a": {"rpc": ["h:1"], "colour": "red"}}},      # unknown key
    {"public": {"bind": []}},
    {"public": {"bind": ["h:99999"]}},
    {"limits": {"max_body_bytes": 0}},
    {"message": {"timeout": 0}},
    {"rpc": {"comet_timeout": -1}},
    {"nonsense": {}},
])
def test_bad_values_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        load(None, overrides)


@pytest.mark.parametrize("bind", ["0.0.0.0:8091", "[::]:8091", "10.1.2.3:8091", "admin.example:8091"])
def test_exposed_admin_needs_a_token(bind: str) -> None:
    with pytest.raises(ConfigError, match="admin.token"):
        load(None, {"admin": {"bind": ["127.0.0.1:8091", bind]}})
    assert load(None, {"admin": {"bind": [bind], "token": "t"}}).admin.token == "t"


@pytest.mark.parametrize("bind", ["127.0.0.1:8091", "127.9.9.9:1", "[::1]:8091", "localhost:8091"])
def test_loopback_admin_needs_no_token(bind: str) -> None:
    assert load(None, {"admin": {"bind": [bind]}}).admin.bind == [bind]


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("LOCALHOST")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("example.com")


def test_main_refuses_to_start_unprotected(tmp_path: Path) -> None:
    path = tmp_path / "web.conf"
    path.write_text('[admin]\nbind = ["0.0.0.0:8091"]\n')
    assert main(["-c", os.fspath(path)]) == CONFIG_ERROR


def test_main_reports_a_missing_file(tmp_path: Path) -> None:
    assert main(["-c", os.fspath(tmp_path / "absent.conf")]) == CONFIG_ERROR
