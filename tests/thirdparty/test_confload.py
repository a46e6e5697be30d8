"""confload: TOML -> frozen dataclasses, type and key checking, check() hooks, parse_address."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from thirdparty.confload import ConfigError, load_config, parse_address


@dataclass(frozen=True)
class Limits:
    max_key_bytes: int = 128
    queue: int = 128

    def check(self) -> None:
        if self.max_key_bytes < 1:
            raise ConfigError(f"max_key_bytes must be >= 1, got {self.max_key_bytes}")


@dataclass(frozen=True)
class Comet:
    name: str = "node1"
    weight: int = 1
    heartbeat: float = 30.0
    debug: bool = False
    tcp: list[str] = field(default_factory=lambda: ["0.0.0.0:6969"])
    tags: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    token_secret: str | None = None


@dataclass(frozen=True)
class Config:
    comet: Comet = field(default_factory=Comet)
    nodes: dict[str, int] = field(default_factory=lambda: {"node1": 1})
    checked: list[str] = field(default_factory=list)

    def check(self) -> None:
        if any(weight < 1 for weight in self.nodes.values()):
            raise ConfigError("nodes: weights must be >= 1")


def write(tmp_path, text):
    path = tmp_path / "test.conf"
    path.write_text(text)
    return str(path)


def test_defaults_without_a_file():
    assert load_config(Config, None) == Config()


def test_file_overrides_defaults(tmp_path):
    path = write(tmp_path, """
nodes = {a = 1, b = 3}

[comet]
name = "node7"
weight = 2
heartbeat = 45          # an int is fine for a float
debug = true
tcp = ["127.0.0.1:1", "[::1]:2"]
tags = {zone = "eu"}
token_secret = "s3cret"

[comet.limits]
max_key_bytes = 64
""")
    config = load_config(Config, path)
    assert config.comet == Comet(name="node7", weight=2, heartbeat=45.0, debug=True,
                                 tcp=["127.0.0.1:1", "[::1]:2"], tags={"zone": "eu"},
                                 limits=Limits(max_key_bytes=64, queue=128), token_secret="s3cret")
    assert isinstance(config.comet.heartbeat, float)
    assert config.nodes == {"a": 1, "b": 3}
    assert dataclasses.is_dataclass(config.comet.limits)


def test_overrides_merge_over_the_file(tmp_path):
    path = write(tmp_path, "[comet]\nname = 'x'\n[comet.limits]\nqueue = 5\n")
    config = load_config(Config, path, {"comet": {"limits": {"max_key_bytes": 9}, "weight": 4}})
    assert (config.comet.name, config.comet.weight) == ("x", 4)
    assert config.comet.limits == Limits(max_key_bytes=9, queue=5)


@pytest.mark.parametrize("text,message", [
    ("[comet.limits]\nmax_key_bytes = 'big'", "comet.limits.max_key_bytes: expected int, got str"),
    ("[comet.limits]\nmax_key_bytes = true", "comet.limits.max_key_bytes: expected int, got bool"),
    ("[comet.limits]\nmax_key_bytes = 1.5", "comet.limits.max_key_bytes: expected int, got float"),
    ("[comet]\ndebug = 1", "comet.debug: expected bool, got int"),
    ("[comet]\nheartbeat = false", "comet.heartbeat: expected float, got bool"),
    ("[comet]\nname = 3", "comet.name: expected str, got int"),
    ("[comet]\ntcp = 'a:1'", "comet.tcp: expected array, got str"),
    ("[comet]\ntcp = ['a:1', 2]", "comet.tcp[1]: expected str, got int"),
    ("[comet]\ntags = {zone = 1}", "comet.tags.zone: expected str, got int"),
    ("[comet]\ntags = ['x']", "comet.tags: expected table, got array"),
    ("nodes = {a = '1'}", "nodes.a: expected int, got str"),
    ("comet = 5", "comet: expected a table, got int"),
    ("[comet]\ntoken_secret = 5", "comet.token_secret: expected str, got int"),
])
def test_wrong_types_name_the_dotted_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(Config, write(tmp_path, text))
    assert str(info.value) == message


@pytest.mark.parametrize("text,message", [
    ("colour = 'red'", "colour: unknown key"),
    ("[comet]\nnmae = 'x'", "comet.nmae: unknown key"),
    ("[comet.limits]\nmax_keybytes = 3", "comet.limits.max_keybytes: unknown key"),
    ("[web]\nx = 1", "web: unknown key"),
])
def test_unknown_keys_are_rejected(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(Config, write(tmp_path, text))
    assert str(info.value) == message


def test_override_may_pass_a_built_section():
    limits = Limits(max_key_bytes=7)
    assert load_config(Config, None, {"comet": {"limits": limits}}).comet.limits is limits


def test_unknown_override_key_is_rejected():
    with pytest.raises(ConfigError, match="comet.colour: unknown key"):
        load_config(Config, None, {"comet": {"colour": "red"}})


def test_check_runs_on_nested_tables_with_their_dotted_name(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(Config, write(tmp_path, "[comet.limits]\nmax_key_bytes = 0"))
    assert str(info.value) == "comet.limits: max_key_bytes must be >= 1, got 0"


def test_check_runs_on_the_top_level():
    with pytest.raises(ConfigError) as info:
        load_config(Config, None, {"nodes": {"a": 0}})
    assert str(info.value) == "nodes: weights must be >= 1"


@dataclass(frozen=True)
class NeedsName:
    name: str
    port: int = 1


def test_missing_required_key():
    with pytest.raises(ConfigError, match="^name: missing required key$"):
        load_config(NeedsName, None)
    assert load_config(NeedsName, None, {"name": "x"}) == NeedsName("x")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(Config, str(tmp_path / "absent.conf"))


def test_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(Config, write(tmp_path, "[comet\nname = "))


def test_result_is_frozen(tmp_path):
    config = load_config(Config, write(tmp_path, "[comet]\nweight = 3"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.comet.weight = 4  # type: ignore[misc]


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:8090", ("127.0.0.1", 8090)),
    ("localhost:1", ("localhost", 1)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("[::1]:6969", ("::1", 6969)),
    ("[fe80::1]:65535", ("fe80::1", 65535)),
    ("comet-1.example.org:7000", ("comet-1.example.org", 7000)),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", [
    "", "8090", ":8090", "host:", "host:http", "host:65536", "host:-1", "host:+80", "host:1e3",
    "::1:80", "[::1]", "[nothex]:80", "[::1:80", "a b:80", "host:８０", "host:000008090",
])
def test_parse_address_rejects(text):
    with pytest.raises(ConfigError):
        parse_address(text)
