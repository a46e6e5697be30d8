"""Server-side TLS contexts for the client-facing listeners (comet TCP and WebSocket, web HTTP).

``server_context(cert, key)`` loads a PEM certificate chain and its unencrypted PEM private key into an
``ssl.SSLContext`` with the standard library's server defaults (``ssl.create_default_context`` for client
authentication purposes: no client certificates asked, secure ciphers) and TLS 1.2 as the lowest version (every
Android since 5.0, iOS since 5 and every current browser speaks it). Any problem with the files raises
:class:`TlsConfigError` naming the file, so a node refuses to start instead of serving plain text.
"""
from __future__ import annotations

import ssl

from thirdparty.confload import ConfigError


class TlsConfigError(ValueError):
    """The certificate or key cannot be used."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """An SSLContext serving ``cert`` (PEM chain, leaf first) with ``key`` (PEM, unencrypted)."""
    for what, path in (("cert", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TlsConfigError(f"{what} {path!r}: {exc.strerror or exc}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"cert {cert!r} / key {key!r}: cannot load ({exc})") from None
    return context


def check_pair(cert: str, key: str) -> None:
    """A ``[tls]`` section's check: both files or neither, and a pair that loads; ConfigError otherwise."""
    if bool(cert) != bool(key):
        raise ConfigError("set both cert and key (or neither)")
    if cert:
        try:
            server_context(cert, key)
        except TlsConfigError as exc:
            raise ConfigError(str(exc)) from None


def _no_password() -> str:
    raise TlsConfigError("the private key is encrypted: give the node an unencrypted key file")
