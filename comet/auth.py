"""Subscribe tokens on the comet (DESIGN.md section 8): the ``[auth]`` config, its secrets, and the token check.

With no secret configured a comet accepts every subscribe, as gopush-cluster did. With secrets, a subscribe
must carry a token made by the app's back end with ``thirdparty.sub_token.make_token`` (format and example in
docs/protocol.md); a missing, malformed, forged or expired token gets ``-a``. :class:`SubscribeAuth` is the
service's ``token_check``: it returns "" to accept, else why it refused, and counts every outcome in
``CometStats.tokens``.

Secrets come from exactly one of: ``secrets_file`` (one per line; blank lines and ``#`` comments skipped; re-read
when the file changes, so a secret is rotated without restarting the comet), ``secrets_env`` (the name of an
environment variable holding them comma-separated), or ``secrets`` (inline, for development and tests). A secret
is 16..256 characters of printable ASCII other than space and comma, used as its bytes. A source that is set but
yields no secret is an error: a typo must never turn tokens off.
"""
from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from comet.protocol import Subscribe
from comet.stat import CometStats
from thirdparty.confload import ConfigError
from thirdparty.sub_token import TokenResult, verify_token

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 256
MAX_SECRETS = 8
MAX_SECRETS_FILE_BYTES = 64 * 1024
RELOAD_INTERVAL = 5.0  # seconds between two looks at the secrets file
TOKEN_MISSING = "missing"  # counter name for a subscribe without a token while tokens are required


@dataclass(frozen=True)
class AuthConfig:
    """``[auth]``: subscribe tokens. No source set: tokens are off (every subscribe is accepted)."""

    secrets_file: str = ""  # path of a file with one secret per line (first line: the one back ends sign with)
    secrets_env: str = ""   # name of an environment variable holding the secrets, comma-separated
    secrets: list[str] = field(default_factory=list)  # inline secrets (development and tests)
    clock_skew: float = 60.0  # seconds a token is still accepted after its expiry

    @property
    def enabled(self) -> bool:
        return bool(self.secrets_file or self.secrets_env or self.secrets)

    def check(self) -> None:
        sources = [name for name in ("secrets_file", "secrets_env", "secrets") if getattr(self, name)]
        if len(sources) > 1:
            raise ConfigError(f"set only one of {', '.join(sources)}")
        if not 0 <= self.clock_skew <= 3600:
            raise ConfigError("clock_skew must be 0..3600 seconds")
        load_secrets(self)


def parse_secrets(values: Iterable[str], where: str) -> tuple[bytes, ...]:
    """Check each secret; ConfigError naming ``where`` when one is unusable or there are none or too many."""
    secrets: list[bytes] = []
    for number, value in enumerate(values, 1):
        if not MIN_SECRET_BYTES <= len(value) <= MAX_SECRET_BYTES:
            raise ConfigError(f"{where}: secret {number} is {len(value)} characters, not "
                              f"{MIN_SECRET_BYTES}..{MAX_SECRET_BYTES}")
        if not all("!" <= char <= "~" and char != "," for char in value):
            raise ConfigError(f"{where}: secret {number} has a character other than printable ASCII "
                              "(no space, no comma)")
        secrets.append(value.encode("ascii"))
    if not secrets:
        raise ConfigError(f"{where}: no secret")
    if len(secrets) > MAX_SECRETS:
        raise ConfigError(f"{where}: {len(secrets)} secrets, more than {MAX_SECRETS}")
    return tuple(secrets)


def secrets_file_lines(text: str) -> list[str]:
    """The secrets of a secrets file: stripped lines, without blank lines and ``#`` comments."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def read_secrets_file(path: str) -> tuple[bytes, ...]:
    """The secrets in the file at ``path``; ConfigError when it cannot be read or holds no usable secret."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SECRETS_FILE_BYTES + 1)
            mode = os.fstat(file.fileno()).st_mode
    except OSError as exc:
        raise ConfigError(f"secrets_file {path!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRETS_FILE_BYTES:
        raise ConfigError(f"secrets_file {path!r}: larger than {MAX_SECRETS_FILE_BYTES} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"secrets_file {path!r}: not ASCII text") from None
    if mode & stat.S_IROTH:
        log.warning("secrets_file %s is readable by every user of this host: chmod o-r it", path)
    return parse_secrets(secrets_file_lines(text), f"secrets_file {path!r}")


def load_secrets(config: AuthConfig, environ: Mapping[str, str] | None = None) -> tuple[bytes, ...]:
    """The configured secrets; () when tokens are off. ConfigError naming the source when it is unusable."""
    if config.secrets_file:
        return read_secrets_file(config.secrets_file)
    if config.secrets_env:
        value = (os.environ if environ is None else environ).get(config.secrets_env)
        if value is None:
            raise ConfigError(f"secrets_env: environment variable {config.secrets_env} is not set")
        return parse_secrets([part.strip() for part in value.split(",") if part.strip()],
                             f"secrets_env {config.secrets_env}")
    if config.secrets:
        return parse_secrets(config.secrets, "secrets")
    return ()


def _file_signature(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


class SubscribeAuth:
    """The token check of a comet whose config has secrets (``CometService.token_check``)."""

    def __init__(self, config: AuthConfig, stats: CometStats, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.stats = stats
        self.clock = clock
        self.secrets = load_secrets(config)
        if not self.secrets:
            raise ValueError("SubscribeAuth needs a configured secret source")
        self._file_seen = _file_signature(config.secrets_file) if config.secrets_file else None
        self._next_look = 0.0

    def __call__(self, subscribe: Subscribe) -> str:
        """"" when ``subscribe`` carries a valid token for its key, else why not."""
        if not subscribe.token:
            self.stats.tokens[TOKEN_MISSING] += 1
            return "no token"
        result = verify_token(self.secrets, subscribe.key, subscribe.token, self.clock(),
                              leeway=self.config.clock_skew)
        self.stats.tokens[result.value] += 1
        return "" if result is TokenResult.OK else f"token {result.value}"

    def reload_if_changed(self, now: float) -> bool:
        """Re-read the secrets file when it changed (looked at every RELOAD_INTERVAL of ``now``, a monotonic
        clock); True when new secrets are in use. A file that became unusable keeps the old secrets."""
        path = self.config.secrets_file
        if not path or now < self._next_look:
            return False
        self._next_look = now + RELOAD_INTERVAL
        seen = _file_signature(path)
        if seen == self._file_seen:
            return False
        self._file_seen = seen
        try:
            secrets = read_secrets_file(path)
        except ConfigError as exc:
            log.error("auth: %s; still using the %d secret(s) loaded before", exc, len(self.secrets))
            return False
        if secrets == self.secrets:
            return False
        self.secrets = secrets
        log.info("auth: %d secret(s) loaded from %s", len(secrets), path)
        return True
