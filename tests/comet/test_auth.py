"""comet.auth: where secrets come from, what makes them unusable, the token check and the secrets-file reload."""
import os

import pytest

from comet import auth
from comet.auth import AuthConfig, SubscribeAuth, load_secrets
from comet.config import load
from comet.protocol import Subscribe
from comet.stat import CometStats
from thirdparty.confload import ConfigError
from thirdparty.sub_token import make_token

OLD = "old-secret-0123456789"
NEW = "new-secret-0123456789"
NOW = 1_750_000_000.0


def write(path, text, stamp):
    """Write the file and give it a distinct modification time (the reload looks at mtime, size and inode)."""
    path.write_text(text)
    os.utime(path, ns=(stamp, stamp))


def test_no_source_means_tokens_off():
    assert not AuthConfig().enabled and load_secrets(AuthConfig()) == ()
    assert not load(None).auth.enabled


def test_secrets_file_skips_blank_lines_and_comments(tmp_path):
    path = tmp_path / "secrets"
    path.write_text(f"# signing secret first\n{NEW}\n\n   {OLD}   \n")
    config = load(None, {"auth": {"secrets_file": str(path)}})
    assert config.auth.enabled and load_secrets(config.auth) == (NEW.encode(), OLD.encode())


def test_secrets_env():
    config = AuthConfig(secrets_env="PUSH_SECRETS")
    assert load_secrets(config, {"PUSH_SECRETS": f" {NEW} , {OLD},"}) == (NEW.encode(), OLD.encode())
    with pytest.raises(ConfigError, match="PUSH_SECRETS is not set"):
        load_secrets(config, {})
    with pytest.raises(ConfigError, match="no secret"):
        load_secrets(config, {"PUSH_SECRETS": " , "})


@pytest.mark.parametrize("auth_section, needle", [
    ({"secrets": ["short"]}, "secret 1 is 5 characters"),
    ({"secrets": [NEW, "has space in it 0123"]}, "secret 2 has a character"),
    ({"secrets": ["comma,in-the-secret-0123"]}, "secret 1 has a character"),
    ({"secrets": ["ünïcode-secret-01234"]}, "printable ASCII"),
    ({"secrets": [f"{NEW}{i}" for i in range(9)]}, "more than 8"),
    ({"secrets": [NEW], "secrets_env": "X"}, "only one of"),
    ({"secrets_file": "/nonexistent/secrets"}, "No such file"),
    ({"secrets": [NEW], "clock_skew": -1}, "clock_skew"),
])
def test_unusable_auth_config_is_refused_at_load(auth_section, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        load(None, {"auth": auth_section})
    assert "auth" in str(info.value)


def test_an_empty_secrets_file_is_an_error_not_open_mode(tmp_path):
    path = tmp_path / "secrets"
    path.write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError, match="no secret"):
        load(None, {"auth": {"secrets_file": str(path)}})


def test_token_check_counts_every_outcome():
    stats = CometStats("node1")
    check = SubscribeAuth(AuthConfig(secrets=[NEW], clock_skew=0), stats, clock=lambda: NOW)
    good = make_token(NEW.encode(), "alice", int(NOW) + 60)
    assert check(Subscribe("alice", 30, good)) == ""
    assert check(Subscribe("bob", 30, good)) == "token bad_signature"
    assert check(Subscribe("alice", 30, "")) == "no token"
    assert check(Subscribe("alice", 30, "v1.x.y")) == "token malformed"
    assert check(Subscribe("alice", 30, make_token(NEW.encode(), "alice", int(NOW)))) == "token expired"
    assert stats.tokens == {"ok": 1, "bad_signature": 1, "missing": 1, "malformed": 1, "expired": 1}


def test_secrets_file_is_reloaded_when_it_changes(tmp_path, caplog):
    path = tmp_path / "secrets"
    write(path, f"{OLD}\n", 1_000_000_000_000_000_000)
    check = SubscribeAuth(AuthConfig(secrets_file=str(path)), CometStats("node1"), clock=lambda: NOW)
    by_old, by_new = (make_token(secret.encode(), "alice", int(NOW) + 60) for secret in (OLD, NEW))
    assert check(Subscribe("alice", 30, by_new)) != ""
    assert not check.reload_if_changed(0.0)  # unchanged
    write(path, f"{NEW}\n{OLD}\n", 1_000_000_001_000_000_000)
    assert not check.reload_if_changed(1.0)  # looked at most every RELOAD_INTERVAL
    assert check.reload_if_changed(auth.RELOAD_INTERVAL)
    assert check(Subscribe("alice", 30, by_new)) == "" and check(Subscribe("alice", 30, by_old)) == ""
    write(path, "oops\n", 1_000_000_002_000_000_000)  # a broken file keeps the secrets in use
    assert not check.reload_if_changed(2 * auth.RELOAD_INTERVAL)
    assert "still using the 2 secret(s)" in caplog.text
    assert check(Subscribe("alice", 30, by_new)) == ""
    path.unlink()
    assert not check.reload_if_changed(3 * auth.RELOAD_INTERVAL)
    write(path, f"{NEW}\n", 1_000_000_003_000_000_000)
    assert check.reload_if_changed(4 * auth.RELOAD_INTERVAL)
    assert check(Subscribe("alice", 30, by_old)) == "token bad_signature"


def test_world_readable_secrets_file_is_warned_about(tmp_path, caplog):
    path = tmp_path / "secrets"
    path.write_text(f"{NEW}\n")
    path.chmod(0o600)
    load_secrets(AuthConfig(secrets_file=str(path)))
    assert "readable by every user" not in caplog.text
    path.chmod(0o644)
    load_secrets(AuthConfig(secrets_file=str(path)))
    assert "readable by every user" in caplog.text
