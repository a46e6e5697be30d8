"""thirdparty.zk_config: the [zookeeper] section shared by every role; static mode is the default."""
from __future__ import annotations

import pytest

from message import config as message_config
from thirdparty.confload import ConfigError, load_config
from thirdparty.zk_config import ZookeeperConfig
from web import config as web_config


def test_defaults_are_static_mode() -> None:
    config = ZookeeperConfig()
    assert (config.hosts, config.root, config.session_timeout, config.enabled) == ("", "/pushcluster", 10.0, False)
    assert web_config.load(None).zookeeper == config
    assert message_config.load(None).zookeeper == config


@pytest.mark.parametrize("hosts", ["127.0.0.1:2181", "zk1:2181,zk2:2182,zk3", "zk1:2181,zk2:2181/apps/push",
                                   "[::1]:2181", "localhost"])
def test_good_hosts(hosts: str) -> None:
    assert load_config(ZookeeperConfig, None, {"hosts": hosts}).enabled


@pytest.mark.parametrize("overrides, complaint", [
    ({"hosts": "zk1:2181,,zk2:2181"}, "empty server"),
    ({"hosts": "zk1:99999"}, "port"),
    ({"hosts": "zk1:2181/"}, "chroot"),
    ({"hosts": "zk1:2181/a//b"}, "chroot"),
    ({"root": "pushcluster"}, "absolute"),
    ({"root": "/"}, "absolute"),
    ({"root": "/push/../x"}, "bad component"),
    ({"root": "/push/"}, "bad component"),
    ({"session_timeout": 0.1}, "session_timeout"),
    ({"session_timeout": 1e6}, "session_timeout"),
])
def test_bad_values_name_the_key(overrides: dict, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_config(ZookeeperConfig, None, overrides)
    with pytest.raises(ConfigError, match="zookeeper"):
        web_config.load(None, {"zookeeper": overrides})
