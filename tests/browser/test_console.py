"""The admin console (web/static/console.*, served on the admin listener at /console/) in headless Chromium against a
real in-process cluster whose admin listener has a token, and its routes over HTTP.

The browser test logs in (a wrong token first: an error is shown), reads the cluster view (with the comet's
broadcast counters after one ``POST /push/all``), searches a key that had a push written to a live connection and
one pushed while it was offline (and tags and an alias set through the admin API), opens the offline message and
checks that the verdict the page shows is the one ``GET /msg/trace`` gives. Mids are above 2^53, so a page that
read them as JS numbers would ask for the wrong message. The tag search test pages through the keys of an
expression (``GET /tag/keys``), opens one in the key view and shows a bad expression's error. A screenshot of each
page goes to the test's tmp dir, and with PUSHCLUSTER_DOCS_SCREENSHOT=1 to docs/img/console-*.png (the README's
screenshots).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.browser.conftest import BrowserCluster, ClusterFactory, needs_chromium
from tests.helpers import eventually
from tests.integration.conftest import TcpSubscriber
from web import config as web_config

module_loop = pytest.mark.asyncio(loop_scope="module")   # the fixtures' loop (conftest.py)

TOKEN = "console-admin-token-0123"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The conftest's clusters get an admin token (its web config is built through web.config.load)."""
    load = web_config.load

    def with_token(path: str | None, overrides: Any = None) -> web_config.WebConfig:
        overrides = dict(overrides or {})
        overrides["admin"] = {**overrides.get("admin", {}), "token": TOKEN}
        return load(path, overrides)

    monkeypatch.setattr(web_config, "load", with_token)
    yield


async def start(make_cluster: ClusterFactory) -> BrowserCluster:
    cluster = await make_cluster()
    cluster.http.headers["Authorization"] = f"Bearer {TOKEN}"   # for cluster.push and the API checks
    return cluster


async def api(cluster: BrowserCluster, path: str, **params: Any) -> dict[str, Any]:
    reply = await cluster.http.get(f"{cluster.admin}{path}", params=params)
    assert reply.status_code == 200, reply.text
    envelope: dict[str, Any] = reply.json()
    assert envelope["ret"] == 0, envelope
    data: dict[str, Any] = envelope["data"]
    return data


async def admin_post(cluster: BrowserCluster, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
    """POST an admin API path (body as JSON when given); the envelope's data (ret 0 asserted)."""
    content = None if body is None else json.dumps(body)
    reply = await cluster.http.post(f"{cluster.admin}{path}", params=params, content=content)
    assert reply.status_code == 200, reply.text
    envelope: dict[str, Any] = reply.json()
    assert envelope["ret"] == 0, envelope
    data: dict[str, Any] = envelope["data"]
    return data


async def texts(page: Any, selector: str) -> list[str]:
    result: list[str] = await page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")
    return result


async def tag_keys_shown(page: Any, keys: list[str]) -> None:
    """Wait until the tag search shows exactly ``keys`` (a page replaces the previous one's list when it arrives)."""
    await page.wait_for_function("""expected => !document.getElementById("tag-results").hidden && JSON.stringify(
        [...document.querySelectorAll("#tag-keys button")].map(b => b.textContent)) === JSON.stringify(expected)""",
                                 arg=keys)


async def shoot(page: Any, tmp_path: Path, name: str) -> None:
    await page.screenshot(path=str(tmp_path / f"console-{name}.png"))
    if os.environ.get("PUSHCLUSTER_DOCS_SCREENSHOT") == "1":
        DOCS_IMG.mkdir(exist_ok=True)
        await page.screenshot(path=str(DOCS_IMG / f"console-{name}.png"), full_page=True)


@needs_chromium
@module_loop
async def test_console_login_cluster_key_and_message_verdict(make_cluster: ClusterFactory, page: Any,
                                                             tmp_path: Path) -> None:
    cluster = await start(make_cluster)
    key = "console-alice"
    subscriber = await TcpSubscriber.connect(("127.0.0.1", int(cluster.comet_config.bind.tcp[0].rsplit(":", 1)[1])),
                                             key)
    try:
        delivered = str((await cluster.push(key, {"n": 1}))["mid"])
        assert json.loads(await subscriber.frame())["msg"] == {"n": 1}
    finally:
        await subscriber.close()

    async def closed() -> bool:
        trace = await api(cluster, "/key/trace", key=key)
        return bool(trace["connections"]) and trace["connections"][-1]["closed"] is not None

    await eventually(closed)
    offline = str((await cluster.push(key, {"n": 2}))["mid"])
    assert int(offline) > 2 ** 53

    async def traced() -> bool:
        states = {str(m["mid"]): m["state"] for m in (await api(cluster, "/key/trace", key=key))["messages"]}
        return states == {delivered: "delivered", offline: "stored_not_fetched"}

    await eventually(traced)

    await admin_post(cluster, "/key/tags", ["staff", "beta", "android"], key=key)
    assert (await admin_post(cluster, "/key/alias", key=key, alias="alice@example"))["alias"] == "alice@example"
    broadcast = await admin_post(cluster, "/push/all", {"news": "maintenance at 22:00"}, expire=600)
    assert broadcast["fc"] == []

    async def broadcast_done() -> bool:
        stat = (await api(cluster, "/cluster"))["nodes"][0]["stat"]
        return bool(stat["broadcast"]["done"] == 1)

    await eventually(broadcast_done)

    await page.goto(f"{cluster.admin}/console")   # redirects to /console/
    await page.wait_for_selector("#login-view:not([hidden])")
    await page.fill("#token", "not-the-token")
    await page.click("#login-button")
    await page.wait_for_selector("#login-error:not([hidden])")
    assert "Wrong token" in await page.text_content("#login-error")
    assert await page.is_hidden("#app")
    await shoot(page, tmp_path, "login")

    await page.fill("#token", TOKEN)
    await page.click("#login-button")
    await page.wait_for_selector("#app:not([hidden])")
    await page.wait_for_selector("#nodes tbody tr")
    node = await page.eval_on_selector_all("#nodes tbody tr td", "cells => cells.map(c => c.textContent)")
    assert node[:4] == ["node1", "active", "1", "100.0 %"]
    assert int(node[5]) >= 2   # the comet's own count of pushes (CometRPC.Stat through /cluster)
    # queued, pending, done, refused, dropped (the comet's /stat "broadcast" block through /cluster)
    assert await texts(page, "#broadcasts tbody tr td") == ["node1", "1", "0", "1", "0", "0"]
    listeners = await page.eval_on_selector_all("#web-stats tbody tr td:first-child",
                                                "cells => cells.map(c => c.textContent)")
    assert listeners == ["public", "admin"]
    assert await page.evaluate("sessionStorage.getItem('pushcluster.adminToken')") == TOKEN
    await shoot(page, tmp_path, "cluster")

    await page.fill("#key", key)
    await page.click("#search-button")
    await page.wait_for_selector("#key-view:not([hidden]) #messages button")
    rows = await page.eval_on_selector_all("#messages button", "bs => bs.map(b => [b.dataset.mid, b.dataset.state])")
    assert rows == [[offline, "stored_not_fetched"], [delivered, "delivered"]]   # newest first, mids as text
    connections = await page.eval_on_selector_all("#connections tbody tr", "rs => rs.map(r => r.cells[3].textContent)")
    assert connections == ["tcp"]
    assert await page.text_content("#key-alias") == "alice@example"
    assert await texts(page, "#key-tags button.tag") == ["android", "beta", "staff"]   # sorted, as /key/info
    assert await page.is_hidden("#key-info-error")
    await shoot(page, tmp_path, "key")

    for mid in (offline, delivered):
        await page.click(f'#messages button[data-mid="{mid}"]')
        await page.wait_for_selector("#message-view:not([hidden])")
        expected = (await api(cluster, "/msg/trace", key=key, mid=mid))["verdict"]
        assert await page.text_content("#message-mid") == mid
        assert await page.get_attribute("#verdict", "data-state") == expected["state"]
        assert await page.text_content("#verdict") == expected["text"]
        kinds = await page.eval_on_selector_all("#events tbody tr", "rs => rs.map(r => r.cells[1].textContent)")
        assert kinds[0] == "accepted" and "written" in kinds
        if mid == offline:
            await shoot(page, tmp_path, "message")
        await page.click("#back")
        await page.wait_for_selector("#key-view:not([hidden])")
    assert sorted(p.name for p in tmp_path.glob("console-*.png")) == [
        "console-cluster.png", "console-key.png", "console-login.png", "console-message.png"]


@needs_chromium
@module_loop
async def test_console_tag_search_pages_opens_a_key_and_shows_a_bad_expression(make_cluster: ClusterFactory,
                                                                                page: Any, tmp_path: Path) -> None:
    cluster = await start(make_cluster)
    tagged = {"user-a": ["beta", "android"], "user-b": ["beta"], "user-c": ["staff"],
              "user-d": ["android", "beta", "staff"], "user-e": ["android", "ios"], "user-f": ["ios", "beta", "android"]}
    for key, tags in tagged.items():
        await admin_post(cluster, "/key/tags", tags, key=key)
    await admin_post(cluster, "/key/alias", key="user-d", alias="dora")
    expression = '[["beta","android"],["staff"]]'

    await page.goto(f"{cluster.admin}/console/")
    await page.wait_for_selector("#login-view:not([hidden])")
    await page.fill("#token", TOKEN)
    await page.click("#login-button")
    await page.wait_for_selector("#app:not([hidden])")

    await page.fill("#tag-expr", expression)
    await page.fill("#tag-count", "3")
    await page.click("#tag-button")
    await tag_keys_shown(page, ["user-a", "user-c", "user-d"])
    assert await page.is_hidden("#tag-prev") and await page.is_visible("#tag-next")
    await shoot(page, tmp_path, "tags")
    await page.click("#tag-next")
    await tag_keys_shown(page, ["user-f"])
    assert await page.is_hidden("#tag-next") and await page.is_visible("#tag-prev")
    assert "Page 2: 1 key(s), the last page." == await page.text_content("#tag-page")
    await page.click("#tag-prev")
    await tag_keys_shown(page, ["user-a", "user-c", "user-d"])
    assert await page.is_hidden("#tag-prev") and await page.is_visible("#tag-next")

    await page.click('#tag-keys button[data-key="user-d"]')   # into the key view
    await page.wait_for_selector("#key-view:not([hidden])")
    await page.wait_for_function("document.getElementById('key-name').textContent === 'user-d'")
    assert await page.text_content("#key-alias") == "dora"
    assert await texts(page, "#key-tags button.tag") == ["android", "beta", "staff"]
    assert await page.input_value("#key") == "user-d"
    await page.click('#key-tags button[data-tag="staff"]')   # a tag of the key: the keys with that tag
    await tag_keys_shown(page, ["user-c", "user-d"])
    assert await page.input_value("#tag-expr") == '[["staff"]]'

    for bad in ('[["beta","android"]', "[[]]", '[["has space"]]'):
        reply = (await cluster.http.get(f"{cluster.admin}/tag/keys", params={"tags": bad})).json()
        assert reply["ret"] == 65534 and reply["msg"], reply
        await page.fill("#tag-expr", bad)
        await page.click("#tag-button")
        await page.wait_for_selector("#tag-error:not([hidden])")
        assert await page.text_content("#tag-error") == f"tag/keys: {reply['msg']} (ret 65534)"
        assert await page.is_hidden("#tag-results")
        await page.fill("#tag-expr", '[["ios"]]')   # a good search clears the error
        await page.click("#tag-button")
        await tag_keys_shown(page, ["user-e", "user-f"])
        assert await page.is_hidden("#tag-error")

    await cluster.message.stop()   # the directory is unreachable: 65535, shown in place (stopped again at the end)
    await page.click("#tag-button")
    await page.wait_for_selector("#tag-error:not([hidden])")
    assert (await page.text_content("#tag-error")).endswith("(ret 65535)")
    assert await page.is_hidden("#tag-results") and await page.is_visible("#app")


@module_loop
async def test_console_is_served_on_the_admin_listener_only(make_cluster: ClusterFactory,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    cluster = await start(make_cluster)
    caplog.set_level(logging.INFO, logger="web.access")
    anonymous = {"Authorization": ""}
    page = await cluster.http.get(f"{cluster.admin}/console/", headers=anonymous)   # the page needs no token
    assert page.status_code == 200 and page.headers["content-type"] == "text/html;charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert b'src="console.js"' in page.content
    assert [r.name for r in caplog.records if "GET /console/ 200" in r.getMessage()] == ["web.access.admin"]
    for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        asset = await cluster.http.get(f"{cluster.admin}/console/{name}", headers=anonymous)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    moved = await cluster.http.get(f"{cluster.admin}/console", headers=anonymous)
    assert (moved.status_code, moved.headers["location"]) == (301, "console/")
    for path in ("/console/", "/console", "/console/console.js", "/cluster"):
        assert (await cluster.http.get(f"{cluster.public}{path}")).status_code == 404, path
    assert (await cluster.http.get(f"{cluster.admin}/demo/")).status_code == 404


@module_loop
async def test_cluster_endpoint_lists_the_comets_and_needs_the_token(make_cluster: ClusterFactory) -> None:
    cluster = await start(make_cluster)
    refused = await cluster.http.get(f"{cluster.admin}/cluster", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    comet = cluster.comet_config.bind
    nodes = (await api(cluster, "/cluster"))["nodes"]
    stat = nodes[0].pop("stat")
    assert nodes == [{"name": "node1", "weight": 1, "share": 1.0, "rpc": [comet.rpc], "tcp": comet.tcp,
                      "ws": comet.ws, "stat_error": ""}]
    assert stat["role"] == "active" and stat["connections"] == 0 and stat["pushes"] == stat["deliveries"] == 0
    assert stat["broadcast"] == {"queued": 0, "pending": 0, "done": 0, "refused": 0, "dropped": 0}
    assert stat["uptime"] >= 0
    assert (await cluster.http.post(f"{cluster.admin}/cluster")).status_code == 405
