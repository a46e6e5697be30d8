"""The browser client (web/static/pushcluster.js) end to end, in headless Chromium against a real in-process cluster.

The demo page is served by the web node (/demo/). The tests drive it through its form and read what it shows.
Messages are pushed through the admin API. The cases: live messages in order; messages pushed while disconnected
fetched exactly once after a reconnect; a comet restart that the client recovers from by itself; a refused token;
a gap (trimmed) shown; a missing heartbeat reply treated as a dead connection; JSONP and the legacy message form.
"Exactly once" is checked after a final push has arrived: the client hands messages out in mid order, so
anything duplicated or missing before it would show.

Set PUSHCLUSTER_DOCS_SCREENSHOT=1 to also write docs/img/demo.png (the README's screenshot).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually
from tests.browser.conftest import SECRET, BrowserCluster, ClusterFactory, needs_chromium
from thirdparty.sub_token import make_token

pytestmark = [needs_chromium, pytest.mark.asyncio(loop_scope="module")]

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "demo.png"

# Starts a Subscriber in the page (window.sub); what it hands out goes to window.got, its states to window.states.
START = """(o) => {
    window.got = []; window.states = []; window.gaps = [];
    if (o.goodToken) o.tokenProvider = () => new Promise((resolve) => setTimeout(() => resolve(o.goodToken), 10));
    o.onMessage = (m) => got.push([m.mid, m.source, m.value]);
    o.onState = (s, d) => states.push(d && d.error ? s + ":" + d.error.code : s);
    o.onGap = (gap) => gaps.push(gap);
    o.reconnect = {initial: 0.05, maximum: 0.2};
    window.sub = new PushCluster.Subscriber(o).start();
}"""


async def open_demo(page: Any, cluster: BrowserCluster, query: str = "") -> None:
    await page.goto(f"{cluster.public}/demo/?backoff=0.05{query}")


async def connect(page: Any, key: str, token: str = "") -> None:
    await page.fill("#key", key)
    await page.fill("#token", token)
    await page.click("#connect")


async def wait_state(page: Any, state: str) -> None:
    await page.wait_for_selector(f'#state[data-state="{state}"]')


async def wait_logged(page: Any, count: int) -> list[tuple[str, str, Any]]:
    """Wait until the page's log holds ``count`` messages; ``(mid, source, value)`` of each, in page order."""
    await page.wait_for_function("n => document.querySelectorAll('#log li.message').length >= n", arg=count)
    rows = await page.eval_on_selector_all(
        "#log li.message", "items => items.map(li => [li.dataset.mid, li.dataset.source, li.querySelector('code')"
                           ".textContent])")
    return [(mid, source, json.loads(value)) for mid, source, value in rows]


async def wait_got(page: Any, count: int) -> list[list[Any]]:
    """Wait until window.got (a subscriber started with START) holds ``count`` messages."""
    await page.wait_for_function("n => window.got.length >= n", arg=count)
    got: list[list[Any]] = await page.evaluate("window.got")
    return got


async def push_all(cluster: BrowserCluster, key: str, bodies: list[Any]) -> list[tuple[str, Any]]:
    """Push each body; ``(mid as text, body)`` of each."""
    return [(str((await cluster.push(key, body))["mid"]), body) for body in bodies]


async def test_demo_page_shows_pushed_messages_in_order(make_cluster: ClusterFactory, page: Any,
                                                        tmp_path: Path) -> None:
    cluster = await make_cluster()
    await open_demo(page, cluster)
    await connect(page, "alice")
    await wait_state(page, "live")
    pushed = await push_all(cluster, "alice", [{"title": "hello", "n": 1}, {"title": "how are you?", "n": 2},
                                               {"title": "déjà vu ✓", "n": [3, {"deep": None}]}])
    assert all(int(mid) > 2 ** 53 for mid, _ in pushed)   # beyond a Number's exact range: read as text
    assert await wait_logged(page, 3) == [(mid, "live", body) for mid, body in pushed]
    assert await page.text_content("#last-mid") == pushed[-1][0]
    await page.screenshot(path=str(tmp_path / "demo.png"))
    if os.environ.get("PUSHCLUSTER_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.locator("body").screenshot(path=str(DOCS_SCREENSHOT))


async def test_messages_pushed_while_disconnected_are_fetched_once(make_cluster: ClusterFactory, page: Any) -> None:
    cluster = await make_cluster()
    await open_demo(page, cluster)
    await connect(page, "bob")
    await wait_state(page, "live")
    before = await push_all(cluster, "bob", [{"n": 1}, {"n": 2}])
    await wait_logged(page, 2)
    await page.click("#disconnect")
    await wait_state(page, "closed")
    missed = []
    for n in (3, 4, 5):
        result = await cluster.push("bob", {"n": n})
        assert result["online"] == 0   # nobody connected: stored only
        missed.append((str(result["mid"]), {"n": n}))
    await page.click("#connect")
    await wait_state(page, "live")
    after = await push_all(cluster, "bob", [{"n": 6}])
    logged = await wait_logged(page, 6)
    assert logged == ([(mid, "live", body) for mid, body in before] + [(mid, "fetch", body) for mid, body in missed]
                      + [(mid, "live", body) for mid, body in after])
    stats = await page.evaluate("pushclusterDemo.subscriber.stats")
    assert (stats["fetched"], stats["duplicates"]) == (3, 0)


async def test_client_reconnects_by_itself_after_a_comet_restart(make_cluster: ClusterFactory, page: Any) -> None:
    cluster = await make_cluster()
    await open_demo(page, cluster)
    await connect(page, "carol")
    await wait_state(page, "live")
    first = await push_all(cluster, "carol", [{"n": 1}, {"n": 2}])
    await wait_logged(page, 2)

    async def seen_down() -> None:
        await page.wait_for_selector("#log li.event:has-text('reconnecting in')")

    await cluster.restart_comet(down=seen_down)
    # Pushed as soon as the new comet runs: each arrives live or from the catch-up fetch, depending on when the
    # client gets back; either way exactly once and in order.
    later = await push_all(cluster, "carol", [{"n": 3}, {"n": 4}, {"n": 5}])
    await wait_state(page, "live")
    last = await push_all(cluster, "carol", [{"n": 6}])
    logged = await wait_logged(page, 6)
    assert [(mid, body) for mid, _, body in logged] == first + later + last
    assert logged[-1][1] == "live"
    stats = await page.evaluate("pushclusterDemo.subscriber.stats")
    assert stats["sessions"] == 2


async def test_refused_token_is_shown_and_a_valid_one_subscribes(make_cluster: ClusterFactory, page: Any) -> None:
    cluster = await make_cluster(tokens=True)
    await open_demo(page, cluster)
    await connect(page, "dave", token="v1.1700000000.Onqi5TKJzqFAMEhIH_GpnY-BD8Da8S1IF6wS-fyNRaQ")
    await wait_state(page, "failed")
    assert await page.text_content("#state") == "failed: token refused"
    assert "refused the subscribe: -a" in await page.text_content("#log li.error")
    good = make_token(SECRET.encode(), "dave", int(time.time()) + 3600)
    await connect(page, "dave", token=good)
    await wait_state(page, "live")
    pushed = await push_all(cluster, "dave", [{"n": 1}])
    assert await wait_logged(page, 1) == [(pushed[0][0], "live", {"n": 1})]


async def test_token_provider_replaces_a_refused_token(make_cluster: ClusterFactory, page: Any) -> None:
    cluster = await make_cluster(tokens=True)
    await open_demo(page, cluster)
    good = make_token(SECRET.encode(), "erin", int(time.time()) + 3600)
    await page.evaluate(START, {"key": "erin", "token": "v1.1.expired", "goodToken": good})
    await page.wait_for_function("() => window.sub.state === 'live'")
    pushed = await push_all(cluster, "erin", [{"n": 1}])
    assert await wait_got(page, 1) == [[pushed[0][0], "live", {"n": 1}]]
    stats = await page.evaluate("sub.stats")
    assert (stats["refusals"], stats["sessions"]) == ({"a": 1}, 1)


async def test_trimmed_messages_are_shown_as_a_gap(make_cluster: ClusterFactory, page: Any) -> None:
    cluster = await make_cluster()   # keeps 5 messages per key
    await open_demo(page, cluster)
    await connect(page, "frank")
    await wait_state(page, "live")
    first = await push_all(cluster, "frank", [{"n": 0}])
    await wait_logged(page, 1)
    await page.click("#disconnect")
    await wait_state(page, "closed")
    missed = await push_all(cluster, "frank", [{"n": n} for n in range(1, 8)])   # 1 and 2 are trimmed
    await page.click("#connect")
    await wait_state(page, "live")
    logged = await wait_logged(page, 6)
    assert [(mid, body) for mid, _, body in logged] == first + missed[2:]
    gap = await page.text_content("#log li.gap")
    assert f"after mid {first[0][0]}" in gap
    assert await page.evaluate("pushclusterDemo.subscriber.lastGap") == {
        "key": "frank", "gid": 0, "afterMid": first[0][0], "nextMid": missed[2][0]}


async def test_missing_heartbeat_reply_ends_the_connection(make_cluster: ClusterFactory, page: Any) -> None:
    """Between page and comet, Playwright passes every frame except, on the first connection, the comet's replies to
    heartbeats: the client must give that connection up and subscribe again."""
    cluster = await make_cluster()   # its comet accepts 1 s heartbeats
    frames: list[list[tuple[str, str]]] = []

    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        seen: list[tuple[str, str]] = []
        frames.append(seen)
        first = len(frames) == 1

        def to_page(message: str) -> None:
            seen.append(("comet", message))
            if not (first and message == "+h\r\n" and len(seen) > 1):
                ws.send(message)

        def to_comet(message: str) -> None:
            seen.append(("page", message))
            server.send(message)

        server.on_message(to_page)
        ws.on_message(to_comet)

    await page.route_web_socket("**/sub?*", route)
    await open_demo(page, cluster)
    await page.evaluate(START, {"key": "gina", "heartbeat": 1, "heartbeatTimeout": 0.5})
    await page.wait_for_function("() => window.sub.stats.heartbeatTimeouts === 1 && window.sub.state === 'live'")
    await page.wait_for_function("() => window.sub.stats.sessions === 2")
    assert ("page", "h") in frames[0] and frames[0].count(("comet", "+h\r\n")) >= 1
    # The second connection: heartbeats on schedule, each answered; the connection stays.
    await eventually(lambda: frames[1].count(("comet", "+h\r\n")) >= 3, timeout=8)   # subscribed, then 2 replies
    assert frames[1].count(("page", "h")) >= 2
    assert await page.evaluate("[sub.state, sub.stats.heartbeatTimeouts, sub.stats.sessions]") == ["live", 1, 2]
    pushed = await push_all(cluster, "gina", [{"n": 1}])
    assert await wait_got(page, 1) == [[pushed[0][0], "live", {"n": 1}]]


async def test_jsonp_transport_and_the_legacy_message_form(make_cluster: ClusterFactory, page: Any) -> None:
    """JSONP (what a page on another origin uses: the web node sends no CORS headers) fetches through the legacy
    /msg/get, whose items are JSON strings; the mids keep every digit. version "" asks the comet for the old
    message form (msg as a JSON string)."""
    cluster = await make_cluster()
    await open_demo(page, cluster)
    stored = await push_all(cluster, "hana", [{"n": 1}, ["a", 2], "text"])
    await page.evaluate(START, {"key": "hana", "transport": "jsonp", "version": ""})
    fetched = await wait_got(page, 3)
    assert fetched == [[mid, "fetch", body] for mid, body in stored]
    live = await push_all(cluster, "hana", [{"n": 4, "s": "\u2028 line separator"}])
    got = await wait_got(page, 4)
    assert got[3] == [live[0][0], "live", live[0][1]]
    assert await page.evaluate("[sub.transport, sub.stats.fetches, document.querySelectorAll('script').length]") \
        == ["jsonp", 2, 2]   # the JSONP <script> elements are removed once answered
