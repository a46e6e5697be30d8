"""comet.config: defaults in code, conf/comet.conf in sync with them, and load-time validation."""
import pathlib
import tomllib

import pytest

from comet.config import CometConfig, advertised, load
from thirdparty.confload import ConfigError

CONF = pathlib.Path(__file__).resolve().parents[2] / "conf" / "comet.conf"


def test_defaults_follow_the_design():
    config = load(None)
    assert config == CometConfig()
    assert config.bind.tcp == ["0.0.0.0:6969"] and config.bind.ws == ["0.0.0.0:6968"]
    assert (config.bind.rpc, config.bind.stat) == ("127.0.0.1:6970", "127.0.0.1:6971")
    limits = config.limits
    assert (limits.max_conns_per_key, limits.max_queue, limits.max_key_bytes, limits.max_arg_bytes) == \
        (64, 128, 128, 4096)
    assert (limits.first_packet_timeout, limits.min_heartbeat, limits.heartbeat_grace) == (5.0, 30, 5.0)
    assert config.ring_nodes() == {"node1": 1}


def test_shipped_file_loads_to_the_defaults():
    assert load(str(CONF)) == CometConfig()


def test_shipped_file_lists_every_key_with_its_default(tmp_path):
    """Uncommenting every ``# key = value`` line of conf/comet.conf must give exactly the defaults."""
    lines = []
    for line in CONF.read_text().splitlines():
        if line.startswith("["):
            lines.append(line)
        elif line.startswith("# ") and " = " in line:
            try:
                tomllib.loads(line[2:])
            except tomllib.TOMLDecodeError:
                continue
            lines.append(line[2:])
    path = tmp_path / "comet.conf"
    path.write_text("\n".join(lines) + "\n")
    data = tomllib.loads(path.read_text())
    assert load(str(path)) == CometConfig()
    defaults = CometConfig()
    for section, values in data.items():
        assert set(values) == set(vars(getattr(defaults, section))), section


@pytest.mark.parametrize("overrides, needle", [
    ({"node": {"name": ""}}, "name"),
    ({"node": {"weight": 0}}, "weight"),
    ({"bind": {"tcp": ["nohost"]}}, "nohost"),
    ({"bind": {"tcp": [], "ws": []}}, "tcp and ws"),
    ({"ring": {"nodes": {"other": 1}}}, "ring.nodes must include"),
    ({"ring": {"nodes": {"node1": 0}}}, "weight"),
    ({"limits": {"max_queue": 0}}, "max_queue"),
    ({"limits": {"min_heartbeat": 60, "max_heartbeat": 30}}, "max_heartbeat"),
    ({"limits": {"max_key_bytes": 5000}}, "max_key_bytes"),
    ({"limits": {"timer_tick": 0}}, "timer_tick"),
    ({"limits": {"first_packet_timeout": 0}}, "first_packet_timeout"),
    ({"limits": {"max_queue": "8"}}, "max_queue"),
    ({"limits": {"unknown": 1}}, "unknown"),
    ({"message": {"timeout": -1}}, "timeout"),
])
def test_bad_values_are_refused_naming_the_key(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load(None, overrides)


def test_test_friendly_limits_are_allowed():
    config = load(None, {"limits": {"min_heartbeat": 1, "heartbeat_grace": 0.2, "first_packet_timeout": 0.3,
                                    "timer_tick": 0.05}, "bind": {"stat": ""}})
    assert config.limits.min_heartbeat == 1 and config.bind.stat == ""


def test_ring_and_advertise():
    config = load(None, {"ring": {"nodes": {"node1": 1, "node2": 3}}})
    assert config.ring_nodes() == {"node1": 1, "node2": 3}
    assert advertised("0.0.0.0:6969") == "127.0.0.1:6969"
    assert advertised("[::]:6968") == "[::1]:6968"
    assert advertised("10.0.0.5:1") == "10.0.0.5:1"
