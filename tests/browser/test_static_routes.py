"""The web node's public listener serves the browser client and its demo page (web/static_files.py) over HTTP,
next to the API: content types, revalidation with ETag, no listing or traversal, the demo's security headers."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import ClusterFactory
from web.static_files import FILES, etag_matches

module_loop = pytest.mark.asyncio(loop_scope="module")   # the fixtures' loop (conftest.py)

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"


def test_every_listed_file_is_in_the_package_directory() -> None:
    for name, _content_type, _headers in FILES.values():
        assert (STATIC / name).is_file(), name


@pytest.mark.parametrize("header, matches", [
    ('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True), ('"abd"', False), ("", False),
    ("abc", False)])
def test_etag_matching(header: str, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches


@module_loop
async def test_client_script_is_served_with_type_etag_and_revalidation(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster()
    url = f"{cluster.public}/static/pushcluster.js"
    reply = await cluster.http.get(url)
    assert reply.status_code == 200
    assert reply.content == (STATIC / "pushcluster.js").read_bytes()
    assert reply.headers["content-type"] == "text/javascript;charset=utf-8"
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["access-control-allow-origin"] == "*"
    etag = reply.headers["etag"]
    again = await cluster.http.get(url, headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    assert "content-length" not in again.headers
    weak = await cluster.http.get(url, headers={"If-None-Match": f'"other", W/{etag}'})
    assert weak.status_code == 304
    stale = await cluster.http.get(url, headers={"If-None-Match": '"0000"'})
    assert stale.status_code == 200 and stale.content == reply.content


@module_loop
async def test_demo_page_has_its_security_headers_and_a_redirect(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster()
    page = await cluster.http.get(f"{cluster.public}/demo/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html;charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self' ws: wss:" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert b'src="../static/pushcluster.js"' in page.content
    for name in ("demo.js", "demo.css"):
        asset = await cluster.http.get(f"{cluster.public}/static/{name}")
        assert asset.status_code == 200 and asset.content == (STATIC / name).read_bytes()
    moved = await cluster.http.get(f"{cluster.public}/demo?key=alice")
    assert (moved.status_code, moved.headers["location"]) == (301, "demo/?key=alice")


@module_loop
@pytest.mark.parametrize("path", ["/static/", "/static", "/static/app.py", "/static/../app.py",
                                  "/static/%2e%2e/app.py", "/static/pushcluster.js/", "/demo/demo.html",
                                  "/static/demo.html", "/web/static/pushcluster.js"])
async def test_no_listing_no_traversal_no_other_file(make_cluster: ClusterFactory, path: str) -> None:
    cluster = await make_cluster()
    reply = await cluster.http.get(f"{cluster.public}{path}")
    assert reply.status_code == 404
    assert reply.json() == {"ret": 65534, "msg": "not found"}


@module_loop
async def test_static_files_take_get_only_and_leave_the_api_and_admin_listener_alone(
        make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster()
    assert (await cluster.http.post(f"{cluster.public}/demo/")).status_code == 405
    assert (await cluster.http.get(f"{cluster.admin}/demo/")).status_code == 404
    assert (await cluster.http.get(f"{cluster.admin}/static/pushcluster.js")).status_code == 404
    api = await cluster.http.get(f"{cluster.public}/1/time/get")
    assert api.status_code == 200 and api.json()["ret"] == 0
