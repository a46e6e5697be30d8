/* pushcluster demo page: subscribes one key with PushCluster.Subscriber and logs what arrives: private messages
 * (gid 0, marked "acked" once the client has acked them) and public ones (gid 1, broadcasts).
 * Query parameters preset the form and options: ?key=alice&token=T&lastMid=N&lastPmid=N&heartbeat=30&backoff=0.5
 * &ack=0&connect=1 (lastPmid=none: no public catch-up; backoff: the first reconnect wait in seconds; ack=0: no
 * acks; connect=1 connects at once). */
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const form = $("connect-form"), keyInput = $("key"), tokenInput = $("token"), log = $("log");
  const MAX_LOG = 500;
  const lastPmid = params.get("lastPmid") === "none" ? null : params.get("lastPmid") || "0";
  const demo = window.pushclusterDemo = {subscriber: null, lastMid: params.get("lastMid") || "0", lastPmid: lastPmid,
                                         key: ""};

  function entry(className, parts) {
    const item = document.createElement("li");
    item.className = className;
    const time = new Date().toTimeString().slice(0, 8);
    for (const [cls, text] of [["time", time]].concat(parts)) {
      const span = document.createElement(cls === "value" ? "code" : "span");
      span.className = cls;
      span.textContent = text;
      item.appendChild(span);
    }
    log.appendChild(item);
    while (log.children.length > MAX_LOG) log.removeChild(log.firstChild);
    return item;
  }

  function showState(state, detail) {
    const badge = $("state");
    badge.dataset.state = state;
    badge.textContent = state;
    const connected = state !== "closed" && state !== "failed";
    $("connect").disabled = connected;
    $("disconnect").disabled = !connected;
    if (state === "backoff") {
      entry("event", [["text", "reconnecting in " + detail.delay.toFixed(2) + " s: " + detail.reason]]);
    } else if (state === "failed") {
      badge.textContent = "failed: " + detail.error.code.replace("_", " ");
      entry("event error", [["text", "stopped: " + detail.error.message]]);
    } else {
      entry("event", [["text", state]]);
    }
  }

  function onMessage(message) {
    const isPublic = message.gid === 1;
    if (isPublic) {
      if (demo.lastPmid !== null) demo.lastPmid = demo.subscriber.lastPmid;
      $("last-pmid").textContent = demo.subscriber.lastPmid;
    } else {
      demo.lastMid = message.mid;
      $("last-mid").textContent = message.mid;
    }
    const item = entry(isPublic ? "message public" : "message", [["gid", isPublic ? "public" : "private"],
      ["mid", message.mid], ["source", message.source], ["value", JSON.stringify(message.value)]]);
    item.dataset.mid = message.mid;
    item.dataset.gid = message.gid;
    item.dataset.source = message.source;
  }

  function onAck(message) {
    const item = log.querySelector('li.message[data-gid="0"][data-mid="' + message.mid + '"]');
    if (!item || item.dataset.acked) return;
    item.dataset.acked = "1";
    const mark = document.createElement("span");
    mark.className = "acked";
    mark.textContent = "acked";
    item.insertBefore(mark, item.querySelector(".value"));
  }

  function onGap(gap) {
    const what = gap.gid === 1 ? "public messages" : "messages";
    entry("event gap", [["text", "gap: " + what + " after mid " + gap.afterMid + " were removed on the server " +
                                 "(expired or over the cap) before they could be fetched"]]);
  }

  function connect(event) {
    if (event) event.preventDefault();
    const key = keyInput.value.trim();
    if (!key) return;
    if (key !== demo.key) demo.lastMid = demo.key ? "0" : demo.lastMid;  // another key starts from its beginning
    demo.key = key;
    const backoff = Number(params.get("backoff")) || 0.5;
    try {
      demo.subscriber = new PushCluster.Subscriber({
        key: key, token: tokenInput.value.trim(), lastMid: demo.lastMid, lastPmid: demo.lastPmid,
        heartbeat: Number(params.get("heartbeat")) || 30, ack: params.get("ack") !== "0",
        reconnect: {initial: backoff, maximum: Math.max(30, backoff)},
        onMessage: onMessage, onAck: onAck, onGap: onGap, onState: showState,
      }).start();
    } catch (error) {
      entry("event error", [["text", String(error.message || error)]]);
    }
  }

  form.addEventListener("submit", connect);
  $("disconnect").addEventListener("click", () => { if (demo.subscriber) demo.subscriber.close(); });
  keyInput.value = params.get("key") || "";
  tokenInput.value = params.get("token") || "";
  $("last-mid").textContent = demo.lastMid;
  $("last-pmid").textContent = demo.lastPmid === null ? "none" : demo.lastPmid;
  if (params.get("connect") === "1") connect();
})();
