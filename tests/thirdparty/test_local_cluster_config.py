"""The local cluster's configs and plan: conf/cluster/ as shipped, port shifting, stages, generated files, summary."""
from __future__ import annotations

import pathlib
import tomllib

import pytest

import comet.config
import message.config
import web.config
from thirdparty.confload import ConfigError, load_config
from thirdparty.local_cluster_config import (
    DEFAULT_PORT_BASE, ClusterConfig, ProcessesConfig, RoleProcess, read_role, shift_ports,
)
from thirdparty.local_cluster_plan import comet_stages, load_cluster_config, load_plan, redis_conf, summary
from thirdparty.zk_config import ZookeeperConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONF = ROOT / "conf" / "cluster"
LOADERS = {"message": message.config.load, "comet": comet.config.load, "web": web.config.load}
STANDALONE_PORTS = {8090, 8091, 6968, 6969, 6970, 6971, 7070, 2181, 6379}


def all_ports(plan) -> list[int]:
    return [int(address.rpartition(":")[2]) for child in plan.children for address in child.binds]


def test_shipped_cluster_conf_lists_every_key_with_its_default():
    lines = []
    for line in (CONF / "cluster.conf").read_text().splitlines():
        if line.startswith("["):
            lines.append(line)
        elif line.startswith("# ") and " = " in line:
            try:
                tomllib.loads(line[2:])
            except tomllib.TOMLDecodeError:
                continue
            lines.append(line[2:])
    uncommented = tomllib.loads("\n".join(lines))
    assert {section: set(keys) for section, keys in uncommented.items()} == {
        "zookeeper": {"address", "tick_ms", "heap_mb", "log_level"}, "redis": {"shards", "appendfsync"},
        "processes": {"message", "comet", "web"}, "supervisor": {"ready_timeout", "stop_grace"}}
    assert load_cluster_config(CONF / "cluster.conf") == ClusterConfig()
    assert load_config(ClusterConfig, None, uncommented) == ClusterConfig()


@pytest.mark.parametrize("name, role", [("message-1", "message"), ("message-2", "message"), ("comet-a", "comet"),
                                        ("comet-a-standby", "comet"), ("comet-b", "comet"), ("web", "web")])
def test_every_shipped_role_config_is_a_valid_cluster_mode_config_of_its_role(name, role):
    config = LOADERS[role](str(CONF / f"{name}.conf"))
    assert config.zookeeper.hosts == ClusterConfig().zookeeper.address
    assert config.zookeeper.root == "/pushcluster"
    assert 2 * 0.5 <= config.zookeeper.session_timeout <= 20 * 0.5   # what tickTime 500 ms lets ZooKeeper grant


def test_the_shipped_plan_starts_in_dependency_order_and_stops_in_reverse(tmp_path):
    plan = load_plan(CONF, tmp_path)
    assert [[child.name for child in stage] for stage in plan.stages] == [
        ["zookeeper"], ["redis-r1", "redis-r2"], ["message-1", "message-2"], ["comet-a", "comet-b"],
        ["comet-a-standby"], ["web"]]
    assert [[child.name for child in group] for group in plan.stop_groups()] == [
        ["web"], ["comet-a", "comet-b", "comet-a-standby"], ["message-1", "message-2"], ["redis-r1", "redis-r2"],
        ["zookeeper"]]
    assert plan.conf_dir == CONF   # the default ports: the roles run with the shipped files themselves
    web_child = plan.stages[-1][0]
    assert web_child.argv[1:] == ("-m", "web", "-c", str(CONF / "web.conf"))
    assert plan.zookeeper == ZookeeperConfig(hosts="127.0.0.1:17181", root="/pushcluster", session_timeout=2.0)


def test_the_shipped_ports_are_distinct_and_clear_of_the_usual_defaults(tmp_path):
    ports = all_ports(load_plan(CONF, tmp_path))
    assert len(ports) == len(set(ports)) == 1 + 2 + 2 + 3 * 4 + 2
    assert all(DEFAULT_PORT_BASE <= port < DEFAULT_PORT_BASE + 1000 for port in ports)
    assert not set(ports) & STANDALONE_PORTS


def test_generated_files_put_every_state_in_the_data_dir(tmp_path):
    plan = load_plan(CONF, tmp_path)
    zoo = plan.files[tmp_path / "zookeeper" / "zoo.cfg"]
    assert f"dataDir={tmp_path}/zookeeper/data" in zoo and "clientPort=17181" in zoo and "tickTime=500" in zoo
    redis = plan.files[tmp_path / "redis-r2" / "redis.conf"].splitlines()
    assert {"port 17380", "bind 127.0.0.1", "appendonly yes", "appendfsync everysec",
            f'dir "{tmp_path}/redis-r2"'} <= set(redis)
    assert set(plan.files) == {tmp_path / "zookeeper" / "zoo.cfg", tmp_path / "redis-r1" / "redis.conf",
                               tmp_path / "redis-r2" / "redis.conf"}


def test_shift_ports_moves_only_the_block_of_the_configs():
    text = ('a = "127.0.0.1:17090"\nb = ["0.0.0.0:17169", "[::1]:17999"]\nc = "redis://127.0.0.1:17379/0"\n'
            'd = "127.0.0.1:6379"\ne = "127.0.0.1:18000"\n# see 127.0.0.1:17181\nf = 17090\n')
    assert shift_ports(text, 25000) == (
        'a = "127.0.0.1:25090"\nb = ["0.0.0.0:25169", "[::1]:25999"]\nc = "redis://127.0.0.1:25379/0"\n'
        'd = "127.0.0.1:6379"\ne = "127.0.0.1:18000"\n# see 127.0.0.1:25181\nf = 17090\n')
    assert shift_ports(text, DEFAULT_PORT_BASE) == text


@pytest.mark.parametrize("base", [0, 1023, 64537, 70000])
def test_shift_ports_refuses_a_base_that_leaves_the_port_range(base):
    with pytest.raises(ConfigError, match="port base"):
        shift_ports("x", base)


def test_a_port_base_writes_shifted_role_configs_into_the_data_dir(tmp_path):
    plan = load_plan(CONF, tmp_path, port_base=26000)
    assert plan.conf_dir == tmp_path / "conf"
    assert sorted(all_ports(plan)) == sorted(port + 9000 for port in all_ports(load_plan(CONF, tmp_path)))
    shifted = plan.files[tmp_path / "conf" / "message-1.conf"]
    assert 'bind = "127.0.0.1:26070"' in shifted and 'hosts = "127.0.0.1:26181"' in shifted
    assert 'r2 = "redis://127.0.0.1:26380/0"' in shifted
    assert "clientPort=26181" in plan.files[tmp_path / "zookeeper" / "zoo.cfg"]
    assert plan.zookeeper.hosts == "127.0.0.1:26181"
    comet_a = next(child for child in plan.children if child.name == "comet-a")
    assert comet_a.argv[-1] == str(tmp_path / "conf" / "comet-a.conf")
    assert dict(comet_a.role.shown)["tcp"] == "127.0.0.1:26169"


def role_text(**sections: str) -> str:
    base = {"zookeeper": 'hosts = "127.0.0.1:17181"', "node": 'name = "a"',
            "bind": 'tcp = ["0.0.0.0:17169"]\nws = []\nrpc = "127.0.0.1:17170"\nstat = ""'}
    base.update(sections)
    return "\n".join(f"[{name}]\n{body}" for name, body in base.items() if body)


def test_read_role_takes_what_the_supervisor_waits_for_and_prints(tmp_path):
    role = read_role(tmp_path / "c.conf", role_text(), "comet", "127.0.0.1:17181", tmp_path / "c.conf")
    assert role == RoleProcess("c", "comet", str(tmp_path / "c.conf"), ZookeeperConfig(hosts="127.0.0.1:17181"),
                               binds=("0.0.0.0:17169", "127.0.0.1:17170"),
                               shown=(("tcp", "127.0.0.1:17169"), ("rpc", "127.0.0.1:17170")),
                               registers="comet/a", published_rpc=("127.0.0.1:17170",), comet_name="a")
    advertised = role_text(advertise='tcp = ["push.example.com:17169"]\nrpc = ["10.0.0.5:17170"]')
    role = read_role(tmp_path / "c.conf", advertised, "comet", "127.0.0.1:17181", tmp_path / "c.conf")
    assert role.shown[0] == ("tcp", "push.example.com:17169") and role.published_rpc == ("10.0.0.5:17170",)


@pytest.mark.parametrize("sections, message", [
    ({"bind": 'tcp = []\nws = []\nrpc = "127.0.0.1:17170"'}, r"\[bind\] stat must be set"),
    ({"zookeeper": 'hosts = "127.0.0.1:2181"'}, r"\[zookeeper\] hosts must be '127.0.0.1:17181'"),
    ({"zookeeper": ""}, r"\[zookeeper\] hosts must be set"),
    ({"zookeeper": 'hosts = "127.0.0.1:17181"\nsession_timeout = 0.1'}, "session_timeout"),
    ({"bind": 'tcp = ["nowhere"]\nws = []\nrpc = "127.0.0.1:17170"\nstat = ""'}, r"\[bind\] tcp: address"),
    ({"node": "name = 3"}, r"\[node\] name must be a string"),
])
def test_read_role_names_the_file_and_the_key_it_needs(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message) as caught:
        read_role(tmp_path / "c.conf", role_text(**sections), "comet", "127.0.0.1:17181", tmp_path / "c.conf")
    assert str(tmp_path / "c.conf") in str(caught.value)


def test_a_bad_conf_dir_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no cluster.conf"):
        load_plan(tmp_path, tmp_path / "data")
    (tmp_path / "cluster.conf").write_text('[processes]\nweb = ["missing"]\n')
    with pytest.raises(ConfigError, match="message-1.conf: cannot read"):
        load_plan(tmp_path, tmp_path / "data")
    (tmp_path / "cluster.conf").write_text("[zookeeper]\ntick_ms = 5\n")
    with pytest.raises(ConfigError, match="cluster.conf: zookeeper: tick_ms must be"):
        load_plan(tmp_path, tmp_path / "data")


@pytest.mark.parametrize("processes, message", [
    ({"web": ["web", "web"]}, "listed twice"), ({"comet": []}, "at least one"),
    ({"message": ["redis-x"]}, "taken by the supervisor"), ({"web": ["../web"]}, "letters, digits"),
])
def test_process_names_are_checked(processes, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ProcessesConfig, None, processes)


def comet(name: str, comet_name: str) -> RoleProcess:
    return RoleProcess(name, "comet", "", ZookeeperConfig(), (), (), f"comet/{comet_name}", (), comet_name)


def test_a_second_comet_of_a_name_starts_one_stage_later_so_that_it_is_the_standby():
    comets = [comet("a1", "a"), comet("a2", "a"), comet("b1", "b"), comet("a3", "a"), comet("b2", "b")]
    assert [[c.name for c in stage] for stage in comet_stages(comets)] == [["a1", "b1"], ["a2", "b2"], ["a3"]]


def test_redis_conf_quotes_the_directory(tmp_path):
    text = redis_conf("127.0.0.1:17379", pathlib.Path('/data/my "dir"'), "always")
    assert 'dir "/data/my \\"dir\\""' in text.splitlines() and "appendfsync always" in text


def test_summary_lists_every_process_and_how_to_fail_over(tmp_path):
    plan = load_plan(CONF, tmp_path)
    pids = {child.name: 1000 + index for index, child in enumerate(plan.children)}
    text = summary(plan, pids, {"comet-a": "active", "comet-a-standby": "standby", "comet-b": "active"})
    rows = {line.split()[0]: line.split() for line in text.splitlines()[2:11]}
    assert set(rows) == set(pids)
    assert rows["comet-a-standby"][1:5] == [str(pids["comet-a-standby"]), "comet", "a", "standby"]
    assert "tcp 127.0.0.1:17169" in text and "public 127.0.0.1:17090" in text
    assert f"kill -9 {pids['comet-a']}   (comet-a; comet-a-standby takes over comet a" in text
    assert "http://127.0.0.1:17091/push/private" in text
