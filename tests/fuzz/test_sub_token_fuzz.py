"""Properties of thirdparty.sub_token (the subscribe token a client sends as the 4th TCP argument or the ``token``
query value): any string gets a TokenResult and never an exception, a made token verifies for its key and
secret only, and damaging any character of a token never makes it valid."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from thirdparty.sub_token import MAX_TOKEN_LENGTH, TokenResult, make_token, verify_token
from tests.fuzz.budget import FUZZ, FUZZ_LIGHT
from tests.fuzz.strategies import key_texts

secrets = st.binary(min_size=16, max_size=40)
expiries = st.integers(1, 10**12 - 1)
URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


@FUZZ
@given(st.text(max_size=80) | st.text(URL_SAFE, max_size=70) | st.from_regex(r"v1\.[0-9]{1,13}\.[A-Za-z0-9_-]{40,45}",
                                                                                fullmatch=True),
       st.lists(secrets, min_size=1, max_size=3), key_texts, st.floats(allow_nan=False) | st.integers(0, 10**13))
def test_any_token_string_gets_a_result_never_an_exception(token, keys, key, now):
    result = verify_token(keys, key, token, now)
    assert isinstance(result, TokenResult)
    if len(token) > MAX_TOKEN_LENGTH:
        assert result is TokenResult.MALFORMED


@FUZZ_LIGHT
@given(secrets, secrets, key_texts, key_texts, expiries)
def test_a_token_verifies_for_its_own_key_and_secret_only(secret, other_secret, key, other_key, expires_at):
    token = make_token(secret, key, expires_at)
    assert len(token) <= MAX_TOKEN_LENGTH and set(token) <= set(URL_SAFE)
    assert verify_token(secret, key, token, expires_at - 1) is TokenResult.OK
    assert verify_token([other_secret, secret], key, token, expires_at - 1) is TokenResult.OK  # rotation
    assert verify_token(secret, key, token, expires_at) is TokenResult.EXPIRED
    if other_key != key:
        assert verify_token(secret, other_key, token, 0) is TokenResult.BAD_SIGNATURE
    if other_secret != secret:
        assert verify_token(other_secret, key, token, 0) is TokenResult.BAD_SIGNATURE


@FUZZ_LIGHT
@given(secrets, key_texts, expiries, st.data())
def test_a_damaged_token_is_never_valid(secret, key, expires_at, data):
    token = make_token(secret, key, expires_at)
    at = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from(URL_SAFE + "=+/ é\x00").filter(lambda char: char != token[at]))
    damaged = token[:at] + replacement + token[at + 1:]
    assert verify_token(secret, key, damaged, 0) in (TokenResult.MALFORMED, TokenResult.BAD_SIGNATURE)
