"""The pure logic of web/static/pushcluster.js, run in Chromium with page.evaluate (no Node test runner):
exact 64-bit mids read from JSON text, frame and fetch parsing (new and legacy forms, private and public lists),
dedupe, late public mids, the public lookback, when to ack, the merge of fetched and live messages, backoff, and
option checks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio

from tests.browser.conftest import needs_chromium

pytestmark = [needs_chromium, pytest.mark.asyncio(loop_scope="module")]

SCRIPT = Path(__file__).resolve().parents[2] / "web" / "static" / "pushcluster.js"
BIG = "17005481234567891"   # above 2**53: a Number would read it as 17005481234567892


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def js(browser: Any) -> AsyncIterator[Any]:
    """A blank page with pushcluster.js loaded; evaluate(expression, arg) runs with L = PushCluster.logic."""
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.add_script_tag(path=str(SCRIPT))

    async def evaluate(body: str, arg: Any = None) -> Any:
        return await page.evaluate(f"(arg) => {{ const L = PushCluster.logic; {body} }}", arg)

    try:
        yield evaluate
    finally:
        await context.close()
    assert not errors, errors


async def test_mids_compare_as_decimal_strings(js: Any) -> None:
    assert await js('return [L.cmpMid("9", "10") < 0, L.cmpMid("10", "9") > 0, L.cmpMid(arg, arg) === 0,'
                    ' L.cmpMid("17005481234567891", "17005481234567892") < 0]', BIG) == [True] * 4


async def test_mids_from_the_application(js: Any) -> None:
    assert await js('return [L.toMid(0), L.toMid(42), L.toMid("007"), L.toMid(BigInt(arg)), L.toMid(arg),'
                    ' L.toMid("9223372036854775807")]', BIG) == ["0", "42", "7", BIG, BIG, "9223372036854775807"]
    refused = await js("""return [2 ** 53 + 2, -1, 1.5, "", "1e3", "-5", " 5", "9223372036854775808", null, {}]
        .map((value) => { try { L.toMid(value); return "accepted"; } catch (e) { return e.name; } })""")
    assert refused == ["RangeError"] * 10


async def test_mid_texts_only_the_ones_at_the_asked_depth(js: Any) -> None:
    frame = ('{"msg":{"mid":1,"s":"a \\"mid\\": 2 } ] {","list":[{"mid":3}],"mid ":4},"mid":' + BIG + ',"gid":0}')
    assert await js("return L.midTexts(arg, 1)", frame) == [BIG]
    reply = ('{"ret":0,"msg":"ok","data":{"msgs":[{"msg":{"mid":5},"mid":17005481234567891,"gid":0},'
             '{"msg":[1,{"mid":6}],"mid":17005481234567893,"gid":0},{"msg":"mid","mid":17005481234567895,"gid":0}]}}')
    assert await js("return L.midTexts(arg, 4)", reply) == [BIG, "17005481234567893", "17005481234567895"]


async def test_frames_replies_refusals_and_both_message_forms(js: Any) -> None:
    new_form = '{"msg":{"title":"hi","n":[1,2]},"mid":' + BIG + ',"gid":0}'
    old_form = '{"msg":"{\\"title\\":\\"hi\\",\\"n\\":[1,2]}","mid":' + BIG + ',"gid":0}'
    result = await js("""return [L.parseFrame("k", "+h\\r\\n", false), L.parseFrame("k", "-a\\r\\n", false),
        L.parseFrame("k", arg[0], false), L.parseFrame("k", arg[1], true), L.parseFrame("k", arg[0], true)]""",
                      [new_form, old_form])
    message = {"key": "k", "mid": BIG, "gid": 0, "value": {"title": "hi", "n": [1, 2]}, "source": "live"}
    assert result == [{"ack": True}, {"refusal": "a"}, {"message": message}, {"message": message},
                      {"message": message}]   # the new form's msg stays as it is even when told "old form"
    string_value = await js('return L.parseFrame("k", \'{"msg":"\\\\"hi\\\\"","mid":3,"gid":0}\', true).message.value')
    assert string_value == "hi"


@pytest.mark.parametrize("text", ['{"msg":1}', '{"msg":1,"mid":1.5,"gid":0}', '{"msg":1,"mid":-3}',
                                  '{"msg":1,"mid":"7"}', '{"msg":1,"mid":92233720368547758070}',
                                  '{"msg":1,"mid":7,"gid":-1}', '[1]', "{bad json", '{"msg":1,"mid":1,"mid":2}'])
async def test_unreadable_messages_are_refused(js: Any, text: str) -> None:
    assert await js("try { L.parseFrame('k', arg, false); return 'accepted'; } catch (e) { return 'refused'; }",
                    text) == "refused"


async def test_fetch_replies_current_and_legacy(js: Any) -> None:
    reply = ('{"ret":0,"msg":"ok","data":{"msgs":[{"msg":{"a":1},"mid":17005481234567891,"gid":0},'
             '{"msg":null,"mid":17005481234567893,"gid":0}],"trimmed":true}}')
    page = await js("return L.parseFetchReply('k', arg)", reply)
    assert page == {"trimmed": True, "publicMessages": [], "publicTrimmed": False, "messages": [
        {"key": "k", "mid": BIG, "gid": 0, "value": {"a": 1}, "source": "fetch"},
        {"key": "k", "mid": "17005481234567893", "gid": 0, "value": None, "source": "fetch"}]}
    assert await js("return L.parseFetchReply('k', arg)", '{"ret":0,"msg":"ok"}') == {
        "messages": [], "trimmed": False, "publicMessages": [], "publicTrimmed": False}
    assert await js("try { L.parseFetchReply('k', arg); } catch (e) { return e.ret; }",
                    '{"ret":65534,"msg":"param error"}') == 65534
    legacy = await js("return L.parseLegacyFetch('k', {ret: 0, msg: 'ok', data: {msgs: [arg], pmsgs: []}})",
                      '{"msg":"{\\"a\\":1}","mid":' + BIG + ',"gid":0}')
    assert legacy == {"trimmed": False, "publicMessages": [], "publicTrimmed": False, "messages": [
        {"key": "k", "mid": BIG, "gid": 0, "value": {"a": 1}, "source": "fetch"}]}


async def test_fetch_replies_with_public_messages(js: Any) -> None:
    """pmsgs (gid 1) and msgs are told apart by their list, whichever comes first; each keeps its exact mids."""
    reply = ('{"ret":0,"msg":"ok","data":{"pmsgs":[{"msg":{"mid":1,"all":true},"mid":17005481234567897,"gid":1}],'
             '"msgs":[{"msg":[{"mid":2}],"mid":' + BIG + ',"gid":0}],"ptrimmed":true}}')
    page = await js("return L.parseFetchReply('k', arg)", reply)
    assert page == {
        "messages": [{"key": "k", "mid": BIG, "gid": 0, "value": [{"mid": 2}], "source": "fetch"}], "trimmed": False,
        "publicMessages": [{"key": "k", "mid": "17005481234567897", "gid": 1, "value": {"mid": 1, "all": True},
                            "source": "fetch"}], "publicTrimmed": True}
    assert await js("return L.midTexts(arg, 4, 'pmsgs').concat(L.midTexts(arg, 4, 'msgs'))", reply) == [
        "17005481234567897", BIG]
    legacy = await js("return L.parseLegacyFetch('k', {ret: 0, msg: 'ok', data: {msgs: [], pmsgs: [arg]}})",
                      '{"msg":"{\\"b\\":2}","mid":17005481234567899,"gid":1}')
    assert legacy == {"messages": [], "trimmed": False, "publicTrimmed": False, "publicMessages": [
        {"key": "k", "mid": "17005481234567899", "gid": 1, "value": {"b": 2}, "source": "fetch"}]}


async def test_public_lookback_is_exact_beyond_2_to_the_53(js: Any) -> None:
    mids = [BIG, "17005481200000000", "100000000", "100000001", "99999999", "0", "9223372036854775807"]
    assert await js("return arg.map(L.lookback)", mids) == [
        str(int(mid) - 10 ** 8) if int(mid) > 10 ** 8 else "0" for mid in mids]


async def test_public_window_accepts_late_mids_once(js: Any) -> None:
    """A broadcast below the newest is handed out when unseen; each public mid at most once; mids at or below the
    start position count as seen."""
    result = await js("""const w = new L.PublicWindow("17005481234567000"), out = [];
        for (const mid of ["17005481234567005", "17005481234567003", "17005481234567005", "17005481234567003",
                           "17005481234567000", "17005481234566999", "17005481234567004", "17005481234567010"])
            out.push(w.accept(mid));
        return [out, w.newest, w.fetchFrom()]""")
    assert result == [[True, True, False, False, False, False, True, True], "17005481234567010", "17005481234567000"]
    far = await js("""const w = new L.PublicWindow("0"); w.accept(arg); return w.fetchFrom()""", BIG)
    assert far == str(int(BIG) - 10 ** 8)   # 10 s before the newest


async def test_public_window_forgets_the_oldest_and_raises_its_floor(js: Any) -> None:
    """With room for 3 mids, the 4th handed out pushes the oldest out: it and anything below it count as seen from
    then on (never handed out twice), while unseen mids above it still pass."""
    result = await js("""const w = new L.PublicWindow("0", 3), out = [];
        for (const mid of ["20", "10", "30", "40", "10", "15", "20", "25", "20"]) out.push(w.accept(mid));
        return [out, w.floor, w.newest, Array.from(w.seen)]""")
    assert result == [[True, True, True, True, False, False, False, True, False], "20", "40", ["30", "40", "25"]]


async def test_ack_tracker_acks_once_taken_and_written_to_the_connection(js: Any) -> None:
    result = await js("""const t = new L.AckTracker(2);
        return [t.arrived("5"), t.taken("5", false),     // live copy first (held during the catch-up), then taken
                t.taken("6", true),                      // taken from this connection
                t.taken("7", false), t.arrived("7"),     // fetched and taken first, the live copy after
                t.taken("8", false), t.arrived("9"),     // fetched only (pushed before the subscribe); live only
                t.taken("3", false), t.taken("4", false), t.arrived("8")]  /* 8 forgotten past the limit */""")
    assert result == [False, True, True, False, True, False, False, False, False, False]


async def test_cursor_drops_duplicates_and_older_mids_per_gid(js: Any) -> None:
    accepted = await js("""const cursor = new L.Cursor({0: "5"});
        return [["3", 0], ["5", 0], ["6", 0], ["6", 0], ["17005481234567891", 0], ["9", 0], ["2", 1], ["2", 1]]
            .map(([mid, gid]) => cursor.accept({mid: mid, gid: gid})).concat([cursor.get(0), cursor.get(1)])""")
    assert accepted == [False, False, True, False, True, False, True, False, BIG, "2"]


async def test_merge_keeps_mid_order_and_online_only_messages(js: Any) -> None:
    # Live during the catch-up: 12 (online only, never stored), 14 (also fetched), 20 (after the page);
    # fetched: 11, 13, 14. The merge goes out in mid order; the cursor drops the second 14.
    order = await js("""const live = new L.LiveBuffer(), cursor = new L.Cursor({0: "10"}), out = [];
        for (const mid of ["12", "14", "20"]) live.add({mid: mid, gid: 0});
        live.add({mid: "3", gid: 1});
        const merged = L.mergePage(live, ["11", "13", "14"].map((mid) => ({mid: mid, gid: 0})));
        const drained = live.drain();
        for (const m of merged.concat(drained)) if (cursor.accept(m)) out.push(m.gid + ":" + m.mid);
        return [merged.map((m) => m.mid), drained.map((m) => m.mid), out, live.length]""")
    assert order == [["11", "12", "13", "14"], ["14", "20", "3"], ["0:11", "0:12", "0:13", "0:14", "0:20", "1:3"], 0]


async def test_backoff_grows_caps_jitters_and_resets(js: Any) -> None:
    delays = await js("""const policy = L.reconnectPolicy({initial: 0.5, maximum: 4, maxAttempts: 6});
        const top = new L.Backoff(policy, () => 0), low = new L.Backoff(policy, () => 1), out = [];
        for (let i = 0; i < 6; i++) out.push([top.nextDelay(), low.nextDelay(), top.exhausted]);
        top.reset();
        return [out, top.nextDelay(), top.exhausted]""")
    assert delays == [[[0.5, 0.25, False], [1, 0.5, False], [2, 1, False], [4, 2, False], [4, 2, False],
                       [4, 2, True]], 0.5, False]
    bad = await js("""return [{initial: 0}, {initial: 5, maximum: 1}, {multiplier: 0.5}, {jitter: 2},
        {maxAttempts: -1}].map((p) => { try { L.reconnectPolicy(p); return "ok"; } catch (e) { return e.name; } })""")
    assert bad == ["RangeError"] * 5


async def test_subscriber_options_are_checked(js: Any) -> None:
    results = await js("""return [{}, {key: ""}, {key: "a", heartbeat: 0}, {key: "a", heartbeat: 1.5},
        {key: "a", lastMid: "x"}, {key: "a", webUrl: "ftp://x"}, {key: "a", reconnect: {initial: -1}}, {key: "a"}]
        .map((o) => {
            try {
                const s = new PushCluster.Subscriber(Object.assign({webUrl: "http://127.0.0.1:1"}, o));
                return [s.state, s.transport, s.lastMid, s.tls];
            }
            catch (e) { return e.name; } })""")
    assert results[:-1] == ["TypeError", "TypeError", "RangeError", "RangeError", "RangeError", "TypeError",
                            "RangeError"]
    assert results[-1] == ["new", "jsonp", "0", False]   # another origin than the page's: JSONP


async def test_subscriber_public_and_ack_options(js: Any) -> None:
    results = await js("""return [{}, {lastPmid: arg}, {lastPmid: BigInt(arg), ack: false}, {lastPmid: null},
        {lastPmid: "x"}, {lastPmid: 2 ** 60}].map((o) => {
            try {
                const s = new PushCluster.Subscriber(Object.assign({key: "a", webUrl: "http://127.0.0.1:1"}, o));
                return [s.lastPmid, s.ack, s._fetchPublic, s.positions];
            }
            catch (e) { return e.name; } })""", BIG)
    assert results == [["0", True, True, {"0": "0", "1": "0"}], [BIG, True, True, {"0": "0", "1": BIG}],
                       [BIG, False, True, {"0": "0", "1": BIG}], [None, True, False, {"0": "0", "1": "0"}],
                       "RangeError", "RangeError"]
