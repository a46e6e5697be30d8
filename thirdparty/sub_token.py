"""PURE subscribe tokens (DESIGN.md section 8): proof, made by the app's back end, that a client may subscribe a key.

No I/O, no clock: the caller passes ``now``. A token binds one subscriber key to an expiry time with an
HMAC-SHA256 under a secret shared by the back end (which signs) and the comets (which verify)::

    token         = "v1." expiry "." signature
    expiry        = Unix time in seconds, ASCII decimal digits, no sign, no leading zero (1..12 digits)
    signature     = base64url(HMAC-SHA256(secret, signing_input)), no "=" padding (43 characters)
    signing_input = "pushcluster-sub-v1\\n" expiry "\\n" key          (the key as UTF-8 bytes)

Every character of a token is URL-safe (``A-Z a-z 0-9 - _ .``), so it goes into the WebSocket query and the TCP
subscribe command unescaped; a token is at most :data:`MAX_TOKEN_LENGTH` bytes. The version prefix lets the
format change later while comets still verify ``v1``. A secret is bytes (the comet's config takes printable ASCII
and uses its bytes as they are). :func:`verify_token` accepts several secrets, so that an operator can rotate
one: the back end signs with the first, the comets accept any. The signature is compared in constant time. A
token is valid while ``now < expiry + leeway``; ``leeway`` absorbs clock skew between the back end and a comet.
The byte-exact example that other implementations can test against is in docs/protocol.md ("Subscribe tokens").
"""
from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
from typing import Sequence

VERSION = "v1"
SIGNING_PREFIX = b"pushcluster-sub-v1\n"
MAX_EXPIRY_DIGITS = 12
SIGNATURE_LENGTH = 43  # base64url of 32 bytes, unpadded
MAX_TOKEN_LENGTH = len(VERSION) + 1 + MAX_EXPIRY_DIGITS + 1 + SIGNATURE_LENGTH  # 59
_EXPIRY = re.compile(r"[1-9][0-9]{0,%d}" % (MAX_EXPIRY_DIGITS - 1), re.ASCII)
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{%d}" % SIGNATURE_LENGTH, re.ASCII)


class TokenResult(enum.Enum):
    """The outcome of :func:`verify_token`; the value is the name used in counters and logs."""

    OK = "ok"
    MALFORMED = "malformed"          # not a v1 token (wrong layout, version, expiry or signature syntax)
    BAD_SIGNATURE = "bad_signature"  # well-formed, but no secret signs this key and expiry this way
    EXPIRED = "expired"              # the signature is right but ``now >= expiry + leeway``


def signing_input(key: str, expiry: str) -> bytes:
    """The bytes the HMAC covers: ``SIGNING_PREFIX + expiry + "\\n" + key`` (key as UTF-8)."""
    return SIGNING_PREFIX + expiry.encode("ascii") + b"\n" + key.encode("utf-8", "surrogatepass")


def _signature(secret: bytes, key: str, expiry: str) -> bytes:
    digest = hmac.new(secret, signing_input(key, expiry), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=")


def make_token(secret: bytes, key: str, expires_at: int) -> str:
    """The v1 token that lets ``key`` subscribe until ``expires_at`` (Unix seconds) under ``secret``."""
    if not isinstance(secret, bytes) or not secret:
        raise ValueError("secret must be non-empty bytes")
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or \
            not 1 <= expires_at < 10 ** MAX_EXPIRY_DIGITS:
        raise ValueError(f"expires_at must be an integer 1..{10 ** MAX_EXPIRY_DIGITS - 1}")
    expiry = str(expires_at)
    return f"{VERSION}.{expiry}.{_signature(secret, key, expiry).decode('ascii')}"


def verify_token(secrets: bytes | Sequence[bytes], key: str, token: str, now: float, *,
                 leeway: float = 0.0) -> TokenResult:
    """Check ``token`` for ``key`` at time ``now`` against one secret or any of several (rotation).

    The signature is checked before the expiry, so a forged token is reported as a bad signature even when its
    expiry has passed. Never raises for any ``token`` string.
    """
    keys = [secrets] if isinstance(secrets, bytes) else list(secrets)
    if not keys:
        raise ValueError("verify_token needs at least one secret")
    if len(token) > MAX_TOKEN_LENGTH:
        return TokenResult.MALFORMED
    version, _, rest = token.partition(".")
    expiry, _, signature = rest.partition(".")
    if version != VERSION or _EXPIRY.fullmatch(expiry) is None or \
            _SIGNATURE.fullmatch(signature) is None:
        return TokenResult.MALFORMED
    given = signature.encode("ascii")
    matched = False
    for secret in keys:
        matched |= hmac.compare_digest(_signature(secret, key, expiry), given)
    if not matched:
        return TokenResult.BAD_SIGNATURE
    if now >= int(expiry) + leeway:
        return TokenResult.EXPIRED
    return TokenResult.OK
