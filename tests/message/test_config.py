"""message.config: defaults in code, conf/message.conf in sync with them, and load-time validation."""
import pathlib
import tomllib

import pytest

from message.config import MessageConfig, load
from message.storage import DEFAULT_LIMITS
from thirdparty.confload import ConfigError

CONF = pathlib.Path(__file__).resolve().parents[2] / "conf" / "message.conf"


def test_defaults():
    config = load(None)
    assert config == MessageConfig()
    assert config.rpc.bind == "127.0.0.1:7070"
    assert config.storage.backend == "redis"
    assert config.storage.redis == {"r1": "redis://127.0.0.1:6379/0"}
    assert config.storage.limits() == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.max_expire == DEFAULT_LIMITS.mid_ttl == 2592000


def test_shipped_file_loads_to_the_defaults():
    assert load(str(CONF)) == MessageConfig()


def test_shipped_file_lists_every_key_with_its_default():
    """Uncommenting every ``# key = value`` line of conf/message.conf must give exactly the defaults."""
    section, lines = None, []
    for line in CONF.read_text().splitlines():
        if line.startswith("["):
            section = line
            lines.append(line)
        elif line.startswith("# ") and " = " in line and section:
            candidate = line[2:]
            try:
                tomllib.loads(candidate)
            except tomllib.TOMLDecodeError:
                continue  # prose that happens to contain " = "
            lines.append(candidate)
    data = tomllib.loads("\n".join(lines))
    assert set(data["rpc"]) == set(vars(MessageConfig().rpc))
    assert set(data["storage"]) == set(vars(MessageConfig().storage))
    assert load(None, overrides=data) == MessageConfig()


def test_file_overrides(tmp_path):
    path = tmp_path / "message.conf"
    path.write_text('[rpc]\nbind = "[::1]:7171"\n[storage]\nbackend = "sqlite"\nsqlite_path = "x/m.db"\n'
                    'redis = {a = "redis://h1:6379/0", b = "unix:///tmp/r.sock"}\nredis_weights = {a = 2}\n'
                    'max_per_key = 10\nredis_timeout = 2\n')
    config = load(str(path))
    assert config.rpc.bind == "[::1]:7171"
    assert config.storage.backend == "sqlite"
    assert config.storage.redis_weights == {"a": 2}
    assert config.storage.limits().max_per_key == 10
    assert config.storage.redis_timeout == 2.0


@pytest.mark.parametrize("overrides, named", [
    ({"rpc": {"bind": "7070"}}, "7070"),
    ({"rpc": {"max_fetch_bytes": 0}}, "max_fetch_bytes"),
    ({"storage": {"backend": "memcached"}}, "backend"),
    ({"storage": {"redis": {}}}, "redis"),
    ({"storage": {"redis": {"a": "http://x"}}}, "redis.a"),
    ({"storage": {"redis_weights": {"zz": 1}}}, "redis_weights.zz"),
    ({"storage": {"redis_weights": {"r1": 0}}}, "redis_weights.r1"),
    ({"storage": {"redis_weights": {"r1": 1001}}}, "redis_weights.r1"),
    ({"storage": {"redis_timeout": 0}}, "redis_timeout"),
    ({"storage": {"max_per_key": 0}}, "max_per_key"),
    ({"storage": {"max_expire": "1d"}}, "max_expire"),
    ({"storage": {"mid_ttl": 0}}, "mid_ttl"),
    ({"storage": {"backend": "sqlite", "sqlite_path": ""}}, "sqlite_path"),
    ({"storage": {"colour": "red"}}, "colour"),
])
def test_bad_values_are_rejected_naming_the_key(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load(None, overrides=overrides)
