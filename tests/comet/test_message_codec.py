"""comet.message_codec: byte-exact new/old JSON forms and TCP frames, cached per message."""
import json

from comet.message_codec import EncodedMessage, tcp_frame


def test_new_form_inserts_the_raw_json_verbatim():
    message = EncodedMessage(b'{"title": "hi",  "n": [1, 2]}', 17005481234567890)
    assert message.new_json == b'{"msg":{"title": "hi",  "n": [1, 2]},"mid":17005481234567890,"gid":0}'
    assert message.new_frame == b'$69\r\n' + message.new_json + b'\r\n'
    assert len(message.new_json) == 69


def test_old_form_carries_the_json_as_a_string():
    message = EncodedMessage(b'{"title":"hi"}', 42)
    assert message.old_json == b'{"msg":"{\\"title\\":\\"hi\\"}","mid":42,"gid":0}'
    assert json.loads(message.old_json) == {"msg": '{"title":"hi"}', "mid": 42, "gid": 0}
    assert message.old_frame == b"$%d\r\n%b\r\n" % (len(message.old_json), message.old_json)


def test_non_ascii_length_is_counted_in_bytes():
    raw = '{"t":"推送 ✓"}'.encode()
    message = EncodedMessage(raw, 7)
    new = '{"msg":{"t":"推送 ✓"},"mid":7,"gid":0}'.encode()
    assert message.new_json == new
    assert message.new_frame == b"$%d\r\n" % len(new) + new + b"\r\n"
    assert len(new) > len(new.decode())  # the frame length is bytes, not characters
    old = message.old_json
    assert old == '{"msg":"{\\"t\\":\\"推送 ✓\\"}","mid":7,"gid":0}'.encode()  # UTF-8 kept, not \\u-escaped
    assert message.old_frame.startswith(b"$%d\r\n" % len(old))


def test_gid_and_scalar_messages():
    assert EncodedMessage(b"1", 5, gid=1).new_json == b'{"msg":1,"mid":5,"gid":1}'
    assert EncodedMessage(b'"s"', 5).old_json == b'{"msg":"\\"s\\"","mid":5,"gid":0}'


def test_forms_are_built_once_and_shared():
    message = EncodedMessage(b"{}", 1)
    assert message.frame(True) is message.frame(True) is message.new_frame
    assert message.json(False) is message.old_json
    assert message.frame(False) is not message.frame(True)


def test_invalid_utf8_never_raises_in_a_fan_out():
    message = EncodedMessage(b'"\xff"', 1)
    assert json.loads(message.old_json)["msg"] == '"\ufffd"'


def test_tcp_frame():
    assert tcp_frame(b"") == b"$0\r\n\r\n"
    assert tcp_frame(b"ab") == b"$2\r\nab\r\n"
