/**
 * pushcluster admin console: a dependency-free page over the admin listener's JSON API (same origin).
 *
 * The page holds no data. It first calls GET /stat with the token kept in sessionStorage (or none: an admin
 * listener without a token answers); on HTTP 401 it shows a login form. Every call sends
 * "Authorization: Bearer TOKEN". Views: the cluster (/cluster: comets, weights, ring share, broadcast counters;
 * /stat: requests per listener, with a rate from two polls), a key (/key/trace: connections and recent messages
 * with their verdict; /key/info: its tags and alias), a tag search (/tag/keys: the keys an expression matches,
 * page by page, each opening the key view) and a message (/msg/trace: its timeline and verdict). Mids can exceed 2^53, so they are turned into strings in
 * the raw JSON text before it is parsed, never read as JS numbers. All text is set with textContent.
 */
(function () {
  "use strict";

  const TOKEN_KEY = "pushcluster.adminToken";
  const POLL_MS = 5000;
  const $ = (id) => document.getElementById(id);
  let currentKey = "";
  let lastStat = null;
  let lastComets = {};   // comet name -> its stat at the previous poll (for pushes/s)
  let pollTimer = 0;
  let tagSearch = null;  // the tag search shown: {expr, count, afters: the "after" cursor of each page, page: index}

  class Unauthorized extends Error {}

  /** JSON text -> object, with every number under "mid", "after", "first" or "last" kept as its decimal text. */
  function parseKeepingMids(text) {
    return JSON.parse(text.replace(/(?<!\\)"(mid|after|first|last)":(-?[0-9]+)(?=[,}\]\s])/g, '"$1":"$2"'));
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  /** GET an admin API path (relative to the page's parent: also right behind a proxy prefix); the envelope data. */
  async function api(path, bearer) {
    const headers = {};
    const tok = bearer === undefined ? token() : bearer;
    if (tok) headers.Authorization = "Bearer " + tok;
    const reply = await fetch("../" + path, {headers: headers, cache: "no-store"});
    if (reply.status === 401) throw new Unauthorized("unauthorized");
    const envelope = parseKeepingMids(await reply.text());
    if (!reply.ok || envelope.ret !== 0) {
      throw new Error(path.split("?")[0] + ": " + (envelope.msg || reply.statusText) + " (ret " + envelope.ret + ")");
    }
    return envelope.data;
  }

  function utc(at) {
    if (at === null || at === undefined) return "—";
    return new Date(at * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined || text === "" ? "—" : String(text);
    row.appendChild(td);
    return td;
  }

  function clearList(list, count, emptyText) {   // empty the list; a muted line when nothing will fill it
    list.replaceChildren();
    if (count) return;
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = emptyText;
    list.appendChild(li);
  }

  function fillTable(table, rows) {
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const values of rows) {
      const tr = document.createElement("tr");
      values.forEach((value) => cell(tr, value));
      body.appendChild(tr);
    }
  }

  function showError(el, message) {
    el.textContent = message;
    el.hidden = !message;
  }

  function showLogin(message) {
    clearInterval(pollTimer);
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login-view").hidden = false;
    showError($("login-error"), message || "");
    $("token").focus();
  }

  async function showApp() {
    $("login-view").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = !token();
    await refreshCluster();
    clearInterval(pollTimer);
    pollTimer = setInterval(() => { refreshCluster().catch(handle); }, POLL_MS);
    $("key").focus();
  }

  /** Show a failed call: the login form on 401, else the message in the view's error line (the key search's). */
  function handle(error, where) {
    if (error instanceof Unauthorized) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("The admin listener refused the token.");
    } else {
      showError(where || $("search-error"), String(error.message || error));
    }
  }

  function muted(text) {
    const span = document.createElement("span");
    span.className = "muted";
    span.textContent = text;
    return span;
  }

  // ---- cluster view ----
  async function refreshCluster() {
    const [stat, cluster] = await Promise.all([api("stat"), api("cluster")]);
    const comets = {};
    fillTable($("nodes"), cluster.nodes.map((n) => {
      const st = n.stat;
      let rate = "…";
      const before = lastComets[n.name];
      if (st && before && st.uptime > before.uptime) {
        rate = ((st.pushes - before.pushes) / (st.uptime - before.uptime)).toFixed(2);
      }
      if (st) comets[n.name] = st;
      return [n.name, st ? st.role || "-" : "unreachable (" + n.stat_error + ")", n.weight,
        (100 * n.share).toFixed(1) + " %", st ? st.connections : "-", st ? st.pushes : "-", st ? rate : "-",
        n.rpc.join(", "), n.tcp.join(", "), n.ws.join(", ")];
    }));
    lastComets = comets;
    fillTable($("broadcasts"), cluster.nodes.map((n) => {
      const b = n.stat && n.stat.broadcast;
      return b ? [n.name, b.queued, b.pending, b.done, b.refused, b.dropped] : [n.name, "-", "-", "-", "-", "-"];
    }));
    const rows = [];
    for (const name of ["public", "admin"]) {
      const now = stat[name];
      if (!now) continue;
      const refused = Object.values(now.refusals).reduce((a, b) => a + b, 0);
      let rate = "…";
      const before = lastStat && lastStat[name];
      if (before && stat.uptime > lastStat.uptime) {
        rate = ((now.requests - before.requests) / (stat.uptime - lastStat.uptime)).toFixed(2);
      }
      rows.push([name, now.requests, rate, refused]);
    }
    fillTable($("web-stats"), rows);
    $("uptime").textContent = "Web node up " + Math.round(stat.uptime) + " s; rates over the last poll ("
      + POLL_MS / 1000 + " s).";
    lastStat = stat;
  }

  // ---- key view ----
  async function searchKey(key) {
    showError($("search-error"), "");
    const query = "?key=" + encodeURIComponent(key);
    // the tags and alias are a second call: when only it fails, the key view still shows the trace
    const [data, info] = await Promise.all([api("key/trace" + query), api("key/info" + query).catch((e) => e)]);
    if (info instanceof Unauthorized) throw info;
    currentKey = key;
    $("key-name").textContent = data.key;
    showKeyInfo(info);
    fillTable($("connections"), data.connections.map((c) => [utc(c.opened), c.closed === null ? "open" : utc(c.closed),
      c.peer, c.proto, c.node, c.reason]));
    const list = $("messages");
    clearList(list, data.messages.length, "No traced messages.");
    for (const m of data.messages) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.mid = m.mid;
      button.dataset.state = m.state;
      const state = document.createElement("span");
      state.className = "state";
      state.textContent = m.state;
      const label = document.createElement("span");
      label.textContent = "mid " + m.mid + " · " + utc(m.at) + " · " + m.text;
      button.append(state, label);
      button.addEventListener("click", () => { openMessage(currentKey, m.mid).catch(handle); });
      li.appendChild(button);
      list.appendChild(li);
    }
    const failures = $("failures");
    failures.replaceChildren();
    for (const f of data.failures) {
      const li = document.createElement("li");
      li.textContent = utc(f.at) + ": " + f.reason + (f.node ? " (comet " + f.node + ")" : "");
      failures.appendChild(li);
    }
    $("message-view").hidden = true;
    $("key-view").hidden = false;
  }

  /** The key's alias and tags (each tag a button searching the keys with that tag), or why they are missing. */
  function showKeyInfo(info) {
    const failed = info instanceof Error;
    showError($("key-info-error"), failed ? "Tags and alias: " + info.message : "");
    const alias = $("key-alias");
    alias.replaceChildren(failed ? "—" : info.alias === null ? muted("none") : info.alias);
    const tags = $("key-tags");
    tags.replaceChildren();
    if (failed) tags.textContent = "—";
    else if (!info.tags.length) tags.appendChild(muted("none"));
    for (const tag of failed ? [] : info.tags) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "tag";
      button.dataset.tag = tag;
      button.textContent = tag;
      button.title = "Keys with this tag";
      button.addEventListener("click", () => {
        $("tag-expr").value = JSON.stringify([[tag]]);
        startTagSearch();
        $("tag-view").scrollIntoView();
      });
      tags.appendChild(button);
    }
  }

  // ---- tag search ----
  function startTagSearch() {
    const search = {expr: $("tag-expr").value.trim(), count: $("tag-count").value || "100", afters: [""], page: 0};
    showTagPage(search, 0).catch((error) => {
      $("tag-results").hidden = true;
      handle(error, $("tag-error"));
    });
  }

  /** Page ``page`` of a tag search (its "after" cursor is search.afters[page]); the expression is checked by
   * GET /tag/keys, whose msg is shown when it is bad. */
  async function showTagPage(search, page) {
    showError($("tag-error"), "");
    const data = await api("tag/keys?tags=" + encodeURIComponent(search.expr) + "&count="
      + encodeURIComponent(search.count) + "&after=" + encodeURIComponent(search.afters[page]));
    search.page = page;
    search.afters.length = page + 1;
    if (data.next !== null) search.afters.push(data.next);
    tagSearch = search;
    const list = $("tag-keys");
    clearList(list, data.keys.length, "No key matches.");
    for (const key of data.keys) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.key = key;
      button.textContent = key;
      button.addEventListener("click", () => {
        $("key").value = key;
        searchKey(key).then(() => $("key-view").scrollIntoView()).catch(handle);
      });
      li.appendChild(button);
      list.appendChild(li);
    }
    $("tag-page").textContent = "Page " + (page + 1) + ": " + data.keys.length + " key(s)"
      + (data.next === null ? ", the last page." : "; more on the next page.");
    $("tag-prev").hidden = page === 0;
    $("tag-next").hidden = data.next === null;
    $("tag-results").hidden = false;
  }

  // ---- message view ----
  function details(event) {
    const parts = [];
    for (const [name, value] of Object.entries(event)) {
      if (name === "at" || name === "kind") continue;
      parts.push(name + "=" + (typeof value === "object" && value !== null ? JSON.stringify(value) : String(value)));
    }
    return parts.join(" ");
  }

  async function openMessage(key, mid) {
    const data = await api("msg/trace?key=" + encodeURIComponent(key) + "&mid=" + encodeURIComponent(mid));
    $("message-mid").textContent = data.mid;
    const verdict = $("verdict");
    verdict.dataset.state = data.verdict.state;
    verdict.textContent = data.verdict.text;
    fillTable($("events"), data.events.map((e) => [utc(e.at), e.kind, details(e)]));
    $("key-view").hidden = true;
    $("message-view").hidden = false;
  }

  // ---- wiring ----
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const tok = $("token").value.trim();
    api("stat", tok).then(() => {
      sessionStorage.setItem(TOKEN_KEY, tok);
      $("token").value = "";
      return showApp();
    }).catch((error) => {
      showLogin(error instanceof Unauthorized ? "Wrong token: the admin listener refused it." : String(error.message));
    });
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    searchKey($("key").value).catch(handle);
  });
  $("tag-search").addEventListener("submit", (event) => {
    event.preventDefault();
    startTagSearch();
  });
  for (const [id, step] of [["tag-prev", -1], ["tag-next", 1]]) {
    $(id).addEventListener("click", () => {
      if (tagSearch) showTagPage(tagSearch, tagSearch.page + step).catch((error) => handle(error, $("tag-error")));
    });
  }
  $("back").addEventListener("click", () => {
    $("message-view").hidden = true;
    $("key-view").hidden = false;
  });

  // Try the API with the stored token, or none (an admin listener without a token answers): else log in.
  api("stat").then(showApp).catch((error) => {
    if (error instanceof Unauthorized) showLogin(token() ? "The admin listener refused the stored token." : "");
    else showLogin(String(error.message || error));
  });
}());
