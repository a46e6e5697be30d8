"""thirdparty.sub_token: the v1 token format, byte for byte, and every way a token is refused."""
import pathlib
import re
import shutil
import subprocess

import pytest

from thirdparty.sub_token import MAX_TOKEN_LENGTH, TokenResult, make_token, signing_input, verify_token

PROTOCOL_MD = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

# The worked example of docs/protocol.md ("Subscribe tokens"): other implementations test against it.
EXAMPLE_SECRET = b"example-secret-do-not-use"
EXAMPLE_KEY = "Terry-Mao"
EXAMPLE_EXPIRY = 1700000000
EXAMPLE_TOKEN = "v1.1700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ"

SECRET = b"0123456789abcdef-secret"
NOW = 1_750_000_000


def test_the_documented_example_vector():
    assert signing_input(EXAMPLE_KEY, str(EXAMPLE_EXPIRY)) == b"pushcluster-sub-v1\n1700000000\nTerry-Mao"
    assert make_token(EXAMPLE_SECRET, EXAMPLE_KEY, EXAMPLE_EXPIRY) == EXAMPLE_TOKEN
    assert verify_token(EXAMPLE_SECRET, EXAMPLE_KEY, EXAMPLE_TOKEN, EXAMPLE_EXPIRY - 1) is TokenResult.OK


def test_the_docs_show_the_same_vector():
    text = PROTOCOL_MD.read_text()
    assert EXAMPLE_TOKEN in text and EXAMPLE_SECRET.decode() in text and str(EXAMPLE_EXPIRY) in text


@pytest.mark.skipif(shutil.which("node") is None, reason="node (JavaScript) is not installed")
def test_the_documented_javascript_makes_the_same_token():
    """The JavaScript of docs/protocol.md, run with node, gives the example token."""
    blocks = re.findall(r"```js\n(.*?)```", PROTOCOL_MD.read_text(), re.S)
    assert len(blocks) == 1
    program = blocks[0] + f'\nconsole.log(makeToken("{EXAMPLE_SECRET.decode()}", "{EXAMPLE_KEY}", {EXAMPLE_EXPIRY}));\n'
    result = subprocess.run(["node", "-e", program], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == EXAMPLE_TOKEN


def test_a_token_is_url_safe_and_short():
    for key in ("a", "Terry-Mao", "ключ/ü?&=", "k" * 128):
        for expiry in (1, NOW, 10 ** 12 - 1):
            token = make_token(SECRET, key, expiry)
            assert re.fullmatch(r"[A-Za-z0-9._-]+", token), token
            assert len(token) <= MAX_TOKEN_LENGTH == 59
            assert verify_token(SECRET, key, token, 0) is TokenResult.OK


def test_valid_until_the_expiry_then_expired():
    token = make_token(SECRET, "alice", NOW)
    assert verify_token(SECRET, "alice", token, NOW - 0.001) is TokenResult.OK
    assert verify_token(SECRET, "alice", token, NOW) is TokenResult.EXPIRED
    assert verify_token(SECRET, "alice", token, NOW + 10 ** 6) is TokenResult.EXPIRED


def test_leeway_absorbs_clock_skew():
    token = make_token(SECRET, "alice", NOW)
    assert verify_token(SECRET, "alice", token, NOW + 59, leeway=60) is TokenResult.OK
    assert verify_token(SECRET, "alice", token, NOW + 60, leeway=60) is TokenResult.EXPIRED


def test_a_token_is_bound_to_its_key_and_secret():
    token = make_token(SECRET, "alice", NOW)
    assert verify_token(SECRET, "bob", token, 0) is TokenResult.BAD_SIGNATURE
    assert verify_token(SECRET, "alice ", token, 0) is TokenResult.BAD_SIGNATURE
    assert verify_token(b"another-secret-of-16+", "alice", token, 0) is TokenResult.BAD_SIGNATURE


def test_tampering_is_detected():
    token = make_token(SECRET, "alice", NOW)
    version, expiry, signature = token.split(".")
    later = f"{version}.{int(expiry) + 3600}.{signature}"
    assert verify_token(SECRET, "alice", later, 0) is TokenResult.BAD_SIGNATURE
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert verify_token(SECRET, "alice", f"{version}.{expiry}.{flipped}", 0) is TokenResult.BAD_SIGNATURE


def test_a_forged_token_is_bad_even_when_expired():
    forged = make_token(b"attacker-secret-123", "alice", NOW)
    assert verify_token(SECRET, "alice", forged, NOW + 10) is TokenResult.BAD_SIGNATURE


def test_rotation_first_signs_all_verify():
    old, new = b"old-secret-0123456789", b"new-secret-0123456789"
    by_old, by_new = make_token(old, "alice", NOW), make_token(new, "alice", NOW)
    assert verify_token([new, old], "alice", by_old, 0) is TokenResult.OK
    assert verify_token([new, old], "alice", by_new, 0) is TokenResult.OK
    assert verify_token([new], "alice", by_old, 0) is TokenResult.BAD_SIGNATURE
    assert verify_token((new,), "alice", by_new, 0) is TokenResult.OK
    with pytest.raises(ValueError):
        verify_token([], "alice", by_new, 0)


@pytest.mark.parametrize("token", [
    "", "v1", "v1.", "v1..", "v1.1700000000", "v1.1700000000.",
    "v2.1700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ",          # unknown version
    "V1.1700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ",
    "v1.01700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ",         # leading zero
    "v1.0.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ",
    "v1.-1700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ",
    "v1.+1700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ",
    "v1.１７００００００００.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ",  # non-ASCII digits
    "v1.1234567890123.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ",       # 13 digits
    "v1.1700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ=",         # padding
    "v1.1700000000.Onqi5TKJzqFAMEhIH/GpnY+BD8Da8S1IF6wS+fyNRaQ",          # standard base64 alphabet
    "v1.1700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRa",           # 42 characters
    "v1.1700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ.x",
    "v1.1700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaé",
    "v1.1700000000.\udc80nqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ",
    "x" * 5000,
])
def test_malformed_tokens(token):
    assert verify_token(EXAMPLE_SECRET, EXAMPLE_KEY, token, 0) is TokenResult.MALFORMED


def test_keys_are_signed_as_utf8():
    token = make_token(SECRET, "ключ", NOW)
    assert verify_token(SECRET, "ключ", token, 0) is TokenResult.OK
    assert verify_token(SECRET, "ключ\udc80", token, 0) is TokenResult.BAD_SIGNATURE  # never raises


@pytest.mark.parametrize("secret, key, expiry", [
    (b"", "k", NOW), ("text-secret-0123456", "k", NOW), (SECRET, "", NOW), (SECRET, b"k", NOW),
    (SECRET, "k", 0), (SECRET, "k", -5), (SECRET, "k", 10 ** 12), (SECRET, "k", True), (SECRET, "k", 1.5e9),
])
def test_make_token_refuses_bad_arguments(secret, key, expiry):
    with pytest.raises(ValueError):
        make_token(secret, key, expiry)
