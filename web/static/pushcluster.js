/*! pushcluster.js: the browser client of pushcluster. Dependency-free ES2017, no build step. MIT licence.
 *
 *   <script src="/static/pushcluster.js"></script>
 *   const sub = new PushCluster.Subscriber({key: "alice", lastMid: localStorage.lastMid || "0",
 *     lastPmid: localStorage.lastPmid || "0",
 *     onMessage(m) { show(m.value); localStorage.lastMid = sub.lastMid; localStorage.lastPmid = sub.lastPmid; }});
 *   sub.start();  ...  sub.close();
 *
 * The life cycle is the Python SDK's (comet/subscriber.py). It repeats until close() or a fatal error:
 * 1. GET {webUrl}/1/server/get?k=KEY&p=1 gives the key's comet as "host:port".
 * 2. WebSocket ws[s]://host:port/sub?key=KEY&heartbeat=S[&token=T]&ver=1.0. The first frame is "+h\r\n"
 *    (subscribed) or "-p"/"-a"/"-c"/"-n" (refused, then closed).
 * 3. Catch up: GET /1/msg/get?k=KEY&m=LAST&p=LAST_PUBLIC, repeated from the last fetched mid and pmid until both
 *    lists of a reply are empty. Live messages that arrive meanwhile are held and merged in mid order. A reply
 *    with "trimmed" (private) or "ptrimmed" (public) calls onGap with gid 0 or 1.
 * 4. Live: a frame "h" every `heartbeat` s. No "+h" within `heartbeatTimeout` s means a dead connection.
 * 5. Acks: once onMessage has returned (or the promise it returned has resolved) for a private message that this
 *    connection received, the client sends "a<mid>" (option ack, default true; docs/protocol.md). Public messages
 *    (gid 1), and fetched ones the comet never wrote to this connection, are not acked.
 * A dropped connection, "-n", "-c", or a web node or comet that cannot be reached leads to a new attempt after
 * a jittered exponential backoff (reset once caught up). Fatal (state "failed", sub.error is a SubscribeFailed):
 * "-p" or ret 65534 (key refused); "-a" (token refused) unless tokenProvider gives a new token; or
 * reconnect.maxAttempts failures in a row.
 *
 * Mids are 64-bit and go past what a JavaScript Number holds exactly (2^53). So they are read from the JSON text
 * itself and handed out as decimal strings; never compare them as Numbers. Each message is handed out once.
 * Private messages (gid 0) go out in mid order: a mid at or below the last one handed out is dropped. Public
 * messages (gid 1, broadcasts) have their own mids; two web nodes broadcasting at once can reach a comet in either
 * order, so a public mid below the newest is still handed out when it was not seen: the client remembers the last
 * 1024 public mids it handed out, and each catch-up asks from 10 s (10^8 mid units) before the newest one.
 * lastPmid (option and getter) is the newest public mid handed out: "0" fetches every stored public message, null
 * none (live broadcasts are still handed out). After a restart from lastPmid, public mids at or below it count as
 * seen.
 *
 * HTTP: fetch() when webUrl is the page's own origin (the page is served by the web node). For another origin
 * it uses JSONP, because the web node sends no CORS headers (neither did gopush-cluster): /1/server/get?cb=,
 * and the legacy /msg/get?callback=, whose items are JSON strings and so keep every digit of a mid.
 * Loading: a classic <script> defines the global PushCluster. An ES module can `import` this file and use
 * globalThis.PushCluster. CommonJS gets module.exports.
 */
(function (global) {
  "use strict";

  const MID_RE = /^(0|[1-9][0-9]{0,18})$/;
  const MID_MAX = "9223372036854775807";
  const MAX_TOKEN_REFUSALS = 3;  // consecutive "-a" replies, each with a fresh token, before giving up
  const RET_PARAM = 65534;
  const GID_PUBLIC = 1;
  const PUBLIC_LOOKBACK_DIGITS = 8;  // a catch-up asks public messages from 10^8 mid units (10 s) before the newest
  const REMEMBERED = 1024;           // public mids remembered as seen; also the bound of an AckTracker's sets
  const jsonpCallbacks = {};
  let jsonpSeq = 0;

  // ---- Pure logic: no timers, no sockets (tests/browser/test_logic.py checks it in the browser) -------------

  /** Compares two canonical decimal mids, like a - b. */
  function cmpMid(a, b) {
    return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
  }

  /** Turns a mid from the application (a string, a safe-integer Number or a BigInt) into a canonical string. */
  function toMid(value) {
    const text = typeof value === "number" && !Number.isSafeInteger(value) ? "" : String(value);
    const mid = /^[0-9]+$/.test(text) ? text.replace(/^0+(?=.)/, "") : "";
    if (!MID_RE.test(mid) || cmpMid(mid, MID_MAX) > 0) {
      throw new RangeError("pushcluster: a mid is an integer 0..2^63-1, big ones as strings: " + value);
    }
    return mid;
  }

  // A JSON string (unrolled so that long strings do not backtrack), a number, a ":" after a key.
  const STRING = /"[^"\\]*(?:\\[\s\S][^"\\]*)*"/y, NUMBER = /-?[0-9][0-9.eE+-]*/y, COLON = /\s*:/y;

  /** Returns the text of every number under the key "mid" at nesting `depth` (1 = in the root object), in
   *  document order; with `list`, only those in an array that is the value of the key `list` (at depth - 1).
   *  `text` is valid JSON: JSON.parse has read it already. */
  function midTexts(text, depth, list) {
    const found = [], opener = [];  // opener[level]: the key before the container that opened that level
    let level = 0, key = "";
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c === '"') {
        STRING.lastIndex = i;
        STRING.test(text);
        COLON.lastIndex = STRING.lastIndex;
        if (COLON.test(text)) key = text.slice(i + 1, STRING.lastIndex - 1);
        i = STRING.lastIndex - 1;
      } else if (c === "{" || c === "[") {
        opener[++level] = key;
        key = "";
      } else if (c === "}" || c === "]") {
        level--;
      } else if (c === "-" || (c >= "0" && c <= "9")) {
        NUMBER.lastIndex = i;
        NUMBER.test(text);
        if (level === depth && key === "mid" && (!list || opener[depth - 1] === list)) {
          found.push(text.slice(i, NUMBER.lastIndex));
        }
        i = NUMBER.lastIndex - 1;
      }
    }
    return found;
  }

  /** Builds a message: {key, mid (a decimal string), gid, value (the pushed JSON, parsed), source}. In the
   *  string form (gopush-cluster's old form, and legacy /msg/get items) msg holds the pushed JSON as a string. */
  function toMessage(key, item, midText, stringForm, source) {
    if (!item || typeof item !== "object" || !MID_RE.test(midText || "") || cmpMid(midText, MID_MAX) > 0) {
      throw new SyntaxError("pushcluster: not a message");
    }
    const gid = item.gid === undefined ? 0 : item.gid;
    if (!Number.isInteger(gid) || gid < 0) throw new SyntaxError("pushcluster: bad gid");
    const value = stringForm && typeof item.msg === "string" ? JSON.parse(item.msg) : item.msg;
    return {key: key, mid: midText, gid: gid, value: value, source: source};
  }

  /** Parses one message that is a JSON text of its own: a WebSocket frame, or a legacy /msg/get item. */
  function parseMessage(key, text, stringForm, source) {
    const item = JSON.parse(text), mids = midTexts(text, 1);
    if (mids.length !== 1) throw new SyntaxError("pushcluster: a message needs exactly one mid");
    return toMessage(key, item, mids[0], stringForm, source);
  }

  /** Parses a comet frame (docs/protocol.md): {ack: true}, {refusal: "a"} or {message}. */
  function parseFrame(key, text, stringForm) {
    if (text[0] === "+") return {ack: true};
    if (text[0] === "-") return {refusal: text.charAt(1)};
    return {message: parseMessage(key, text, stringForm, "live")};
  }

  /** Returns the data of an envelope {ret, msg, data}. For ret != 0 it throws an Error that carries `ret`. */
  function envelopeData(envelope) {
    if (!envelope || typeof envelope.ret !== "number") throw new SyntaxError("pushcluster: not an envelope");
    if (envelope.ret === 0) return envelope.data || {};
    const error = new Error("web node: ret " + envelope.ret + " (" + envelope.msg + ")");
    error.ret = envelope.ret;
    throw error;
  }

  /** A fetch reply's page: {messages, trimmed, publicMessages, publicTrimmed}. Items of "pmsgs" are public (gid 1). */
  function fetchPage(data, read) {
    const publics = read(data.pmsgs || [], "pmsgs");
    for (const m of publics) m.gid = GID_PUBLIC;
    return {messages: read(data.msgs || [], "msgs"), trimmed: !!data.trimmed, publicMessages: publics,
            publicTrimmed: !!data.ptrimmed};
  }

  /** Parses a /1/msg/get reply, given as text. Items sit at depth 4: {data: {msgs: [{}], pmsgs: [{}]}}. */
  function parseFetchReply(key, text) {
    return fetchPage(envelopeData(JSON.parse(text)), (items, list) => {
      const mids = midTexts(text, 4, list);
      if (mids.length !== items.length) throw new SyntaxError("pushcluster: msg/get reply without mids");
      return items.map((item, i) => toMessage(key, item, mids[i], false, "fetch"));
    });
  }

  /** Parses a legacy /msg/get reply (through JSONP, already evaluated). Each item is a JSON string. */
  function parseLegacyFetch(key, envelope) {
    return fetchPage(envelopeData(envelope), (items) => items.map((text) => parseMessage(key, text, true, "fetch")));
  }

  /** max(0, mid - 10^8): where a catch-up starts asking public messages. Exact on the decimal string. */
  function lookback(mid) {
    const high = mid.length > PUBLIC_LOOKBACK_DIGITS ? Number(mid.slice(0, -PUBLIC_LOOKBACK_DIGITS)) : 0;
    return high > 0 ? toMid(String(high - 1) + mid.slice(-PUBLIC_LOOKBACK_DIGITS)) : "0";
  }

  /** Adds `value` to the Set `set`, dropping the oldest entries past `limit`. */
  function remember(set, value, limit) {
    set.add(value);
    for (const old of set) { if (set.size <= limit) break; set.delete(old); }
  }

  /** Keeps the last mid handed out for each gid (private ones). accept() is false for a duplicate or an older mid. */
  class Cursor {
    constructor(positions) { this.last = Object.assign({}, positions); }
    get(gid) { return this.last[gid || 0] || "0"; }
    accept(message) {
      if (cmpMid(message.mid, this.get(message.gid)) <= 0) return false;
      this.last[message.gid] = message.mid;
      return true;
    }
  }

  /** The public mids handed out: the last `size` of them, and `floor`, at or below which every mid counts as seen
   *  (the start position, then the newest mid forgotten). accept() is true for a mid above the floor not seen yet,
   *  even below the newest (a late broadcast). */
  class PublicWindow {
    constructor(floor, size) {
      this.floor = this.newest = floor;
      this.size = size || REMEMBERED;
      this.seen = new Set();  // in the order handed out
    }
    accept(mid) {
      if (cmpMid(mid, this.floor) <= 0 || this.seen.has(mid)) return false;
      this.seen.add(mid);
      if (cmpMid(mid, this.newest) > 0) this.newest = mid;
      if (this.seen.size > this.size) {
        const oldest = this.seen.values().next().value;
        this.seen.delete(oldest);
        if (cmpMid(oldest, this.floor) > 0) this.floor = oldest;
      }
      return true;
    }
    /** The pmid a catch-up asks from: 10 s before the newest, not below the floor. */
    fetchFrom() {
      const back = lookback(this.newest);
      return cmpMid(back, this.floor) > 0 ? back : this.floor;
    }
  }

  /** One connection's acks (docs/protocol.md: the comet takes an ack of a mid it wrote to that connection). A private
   *  mid is acked once the application has taken it AND it arrived on the connection, in whichever order. Each
   *  method returns true when the mid is to be acked now. */
  class AckTracker {
    constructor(limit) { this.limit = limit || REMEMBERED; this.arrivedOnly = new Set(); this.takenOnly = new Set(); }
    /** The comet wrote `mid` to this connection. */
    arrived(mid) {
      if (this.takenOnly.delete(mid)) return true;
      remember(this.arrivedOnly, mid, this.limit);
      return false;
    }
    /** The application took `mid` (`live`: the copy it got came from this connection). */
    taken(mid, live) {
      if (this.arrivedOnly.delete(mid) || live) return true;
      remember(this.takenOnly, mid, this.limit);
      return false;
    }
  }

  /** Holds the live messages that arrive while a catch-up fetch runs (arrival order is mid order). */
  class LiveBuffer {
    constructor() { this.messages = []; }
    get length() { return this.messages.length; }
    add(message) { this.messages.push(message); }
    /** Takes the held messages of `gid` whose mid is below `mid`. */
    before(gid, mid) {
      const taken = [], kept = [];
      for (const m of this.messages) (m.gid === gid && cmpMid(m.mid, mid) < 0 ? taken : kept).push(m);
      this.messages = kept;
      return taken;
    }
    drain() { const taken = this.messages; this.messages = []; return taken; }
  }

  /** Interleaves one fetched page with the held live messages that sort before each of its messages.
   *  Duplicates stay in; the Cursor drops them. A live-only message (expire 0) keeps its place. */
  function mergePage(live, page) {
    const merged = [];
    for (const m of page) merged.push.apply(merged, live.before(m.gid, m.mid).concat([m]));
    return merged;
  }

  /** Reconnect policy in seconds. Wait n is min(maximum, initial * multiplier^n), scaled by a random factor
   *  in [1 - jitter, 1]. maxAttempts: consecutive failures before giving up (0 = never). */
  function reconnectPolicy(options) {
    const p = Object.assign({initial: 0.5, maximum: 30, multiplier: 2, jitter: 0.5, maxAttempts: 0}, options);
    if (!(p.initial > 0 && p.initial <= p.maximum && p.multiplier >= 1 && p.jitter >= 0 && p.jitter <= 1 &&
          p.maxAttempts >= 0)) {
      throw new RangeError("pushcluster: reconnect needs 0 < initial <= maximum, multiplier >= 1, jitter 0..1");
    }
    return p;
  }

  class Backoff {
    constructor(policy, random) { this.policy = policy; this.random = random || Math.random; this.failures = 0; }
    /** Counts one more failure. Returns the seconds to wait before the next attempt. */
    nextDelay() {
      const p = this.policy;
      const base = Math.min(p.maximum, p.initial * Math.pow(p.multiplier, Math.min(this.failures, 64)));
      this.failures++;
      return base * (1 - p.jitter * this.random());
    }
    get exhausted() { return this.policy.maxAttempts > 0 && this.failures >= this.policy.maxAttempts; }
    reset() { this.failures = 0; }
  }

  /** The last mid of a fetched list (ascending), checked to be above `after`; `after` for an empty list. */
  function advanced(after, messages) {
    if (!messages.length) return after;
    const last = messages[messages.length - 1].mid;
    if (cmpMid(last, after) <= 0) throw new Error("msg/get after " + after + " did not advance");
    return last;
  }

  // ---- I/O helpers -------------------------------------------------------------------------------------------

  function query(params) {
    return Object.keys(params).map((name) => name + "=" + encodeURIComponent(params[name])).join("&");
  }

  /** GETs `url` and returns its text; `s.aborts` cancels it when the session ends. */
  function fetchText(s, url, seconds) {
    const controller = new AbortController(), timer = setTimeout(() => controller.abort(), seconds * 1000);
    s.aborts.push(() => controller.abort());
    return fetch(url, {cache: "no-store", credentials: "omit", signal: controller.signal}).then((reply) => {
      if (!reply.ok) throw new Error("HTTP " + reply.status + " from the web node");
      return reply.text();
    }).then((text) => { clearTimeout(timer); return text; }, (error) => { clearTimeout(timer); throw error; });
  }

  /** Loads `url` as JSONP: a <script> that calls PushCluster._jsonp.<name>(envelope). */
  function jsonp(s, url, param, seconds) {
    return new Promise((resolve, reject) => {
      const name = "c" + (++jsonpSeq), script = document.createElement("script");
      const done = (error, value) => {
        clearTimeout(timer);
        jsonpCallbacks[name] = function () {};  // a late answer calls a no-op, never an undefined function
        script.remove();
        if (error) reject(error); else resolve(value);
      };
      const timer = setTimeout(() => done(new Error("JSONP: no answer from the web node")), seconds * 1000);
      jsonpCallbacks[name] = (value) => done(null, value);
      script.onerror = () => done(new Error("JSONP: the web node cannot be reached"));
      script.src = url + "&" + param + "=PushCluster._jsonp." + name;
      s.aborts.push(() => done(new Error("aborted")));
      document.head.appendChild(script);
    });
  }

  /** Detaches and closes a WebSocket. Its late events are ignored. */
  function drop(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (ws.readyState < 2) ws.close(1000);
  }

  /** The subscriber gave up for good. code: "refused" (-p, 65534), "token_refused" (-a), "retries_exhausted". */
  class SubscribeFailed extends Error {
    constructor(code, message) { super(message); this.name = "SubscribeFailed"; this.code = code; }
  }

  // ---- The subscriber ----------------------------------------------------------------------------------------

  class Subscriber {
    constructor(options) {
      const o = options || {}, location = global.location;
      if (typeof o.key !== "string" || !o.key) throw new TypeError("pushcluster: key must be a non-empty string");
      this.key = o.key;
      this.heartbeat = o.heartbeat === undefined ? 30 : o.heartbeat;  // comets require >= 30 by default
      if (!Number.isInteger(this.heartbeat) || this.heartbeat < 1) throw new RangeError("pushcluster: heartbeat");
      this.heartbeatTimeout = o.heartbeatTimeout || 10;  // seconds to wait for "+h"
      this.timeout = o.timeout || 10;                    // seconds for each HTTP request and the subscribe reply
      this.webUrl = String(o.webUrl || (location ? location.origin : "")).replace(/\/+$/, "");
      if (!/^https?:\/\/[^/]/.test(this.webUrl)) throw new TypeError("pushcluster: webUrl must be http(s)://...");
      const sameOrigin = !!location && new URL(this.webUrl + "/", location.href).origin === location.origin;
      this.transport = o.transport || (sameOrigin ? "fetch" : "jsonp");
      if (this.transport !== "fetch" && this.transport !== "jsonp") throw new TypeError("pushcluster: transport");
      const https = /^https:/.test(this.webUrl) || (!!location && location.protocol === "https:");
      this.tls = o.tls !== undefined ? !!o.tls : https;  // wss:// for the comet
      this.version = o.version === undefined ? "1.0" : o.version;  // "" or null: gopush-cluster's old form
      this.maxPending = o.maxPending || 10000;  // live messages held during one catch-up
      this.ack = o.ack === undefined ? true : !!o.ack;  // needs a version: gopush-cluster comets take only "h"
      this.state = "new";
      this.error = null;
      this.lastGap = null;
      this.stats = {lookups: 0, sessions: 0, fetches: 0, live: 0, fetched: 0, duplicates: 0, late: 0, gaps: 0,
                    acks: 0, heartbeatTimeouts: 0, refusals: {}};
      this._cursor = new Cursor({0: toMid(o.lastMid === undefined || o.lastMid === null ? "0" : o.lastMid)});
      this._fetchPublic = o.lastPmid !== null;
      this._public = new PublicWindow(toMid(o.lastPmid === undefined || o.lastPmid === null ? "0" : o.lastPmid));
      this._token = o.token || "";
      this._tokenProvider = o.tokenProvider || null;
      this._tokenRefusals = 0;
      this._on = {message: o.onMessage, gap: o.onGap, state: o.onState, ack: o.onAck};
      this._backoff = new Backoff(reconnectPolicy(o.reconnect), o.random);
      this._session = null;
      this._retryTimer = null;
      this._online = () => { if (this.state === "backoff") { clearTimeout(this._retryTimer); this._attempt(); } };
    }

    /** The mid (a decimal string) of the last private message handed out. Persist it to resume after it. */
    get lastMid() { return this._cursor.get(0); }
    /** The newest public mid handed out (a decimal string; the start position until one is; null while public
     *  messages are off and none was). Persist it too. */
    get lastPmid() { return !this._fetchPublic && this._public.newest === "0" ? null : this._public.newest; }
    get positions() { return Object.assign({}, this._cursor.last, {[GID_PUBLIC]: this._public.newest}); }

    start() {
      if (this.state !== "new") return this;
      if (global.addEventListener) global.addEventListener("online", this._online);  // skip the wait
      this._attempt();
      return this;
    }

    /** Stops for good. The next subscriber, started from lastMid, fetches what comes after. */
    close() {
      if (this.state === "closed" || this.state === "failed") return;
      this._stop();
      this._setState("closed");
    }

    async _attempt() {
      const s = this._session = {ws: null, live: new LiveBuffer(), acks: new AckTracker(), catchingUp: true,
                                 ended: false, timers: {}, aborts: []};
      this._setState("connecting");
      try {
        this.stats.lookups++;
        const data = await this._get(s, "/1/server/get", {k: this.key, p: 1}, "cb");
        if (typeof data.server !== "string") throw new Error("web node: no server in the reply");
        if (!this._token && this._tokenProvider) this._token = await this._newToken();
        if (s.ended) return;
        await this._subscribe(s, data.server);
        this.stats.sessions++;
        this._tokenRefusals = 0;
        this._setState("catching_up");
        this._beat(s);
        await this._catchUp(s);
        if (s.ended) return;  // e.g. onMessage called close()
        this._backoff.reset();
        this._setState("live");
      } catch (error) {
        let reason = error;
        if (error.refusal && !s.ended) {
          this.stats.refusals[error.refusal] = (this.stats.refusals[error.refusal] || 0) + 1;
          try { await this._refused(error); } catch (fatal) { reason = fatal; }
        }
        if (error.ret === RET_PARAM) reason = new SubscribeFailed("refused", "key=" + this.key + ": " + error.message);
        this._end(s, reason);
      }
    }

    /** GETs a public endpoint: fetch and the /1/ routes, or JSONP (with /msg/get in its legacy form). */
    async _get(s, path, params, callbackName) {
      const url = this.webUrl + path + "?" + query(params);
      if (this.transport === "jsonp") return envelopeData(await jsonp(s, url, callbackName, this.timeout));
      return envelopeData(JSON.parse(await fetchText(s, url, this.timeout)));
    }

    /** One page of stored messages: private ones after `after`, public ones after `pafter` (null: none). */
    async _fetchPage(s, after, pafter) {
      const withPublic = (params, name) => (pafter === null ? params : Object.assign(params, {[name]: pafter}));
      if (this.transport === "jsonp") {
        const url = this.webUrl + "/msg/get?" + query(withPublic({key: this.key, mid: after}, "pmid"));
        return parseLegacyFetch(this.key, await jsonp(s, url, "callback", this.timeout));
      }
      const url = this.webUrl + "/1/msg/get?" + query(withPublic({k: this.key, m: after}, "p"));
      return parseFetchReply(this.key, await fetchText(s, url, this.timeout));
    }

    /** Opens the WebSocket. Resolves on "+h"; rejects on a refusal (error.refusal), a close or a timeout. */
    _subscribe(s, server) {
      return new Promise((resolve, reject) => {
        const params = {key: this.key, heartbeat: this.heartbeat};
        if (this._token) params.token = this._token;
        if (this.version) params.ver = this.version;
        const ws = s.ws = new WebSocket((this.tls ? "wss://" : "ws://") + server + "/sub?" + query(params));
        let subscribed = false;
        const fail = (error) => { clearTimeout(s.timers.open); drop(ws); reject(error); };
        s.timers.open = setTimeout(() => fail(new Error("comet " + server + ": no reply in " + this.timeout + "s")),
                                   this.timeout * 1000);
        s.aborts.push(() => fail(new Error("aborted")));
        ws.onmessage = (event) => {
          if (subscribed) return this._onFrame(s, String(event.data));
          const reply = String(event.data);
          if (reply[0] === "+") { subscribed = true; clearTimeout(s.timers.open); resolve(); return; }
          const error = new Error("comet " + server + " refused the subscribe: " + reply.trim());
          error.refusal = reply.charAt(1);
          fail(error);
        };
        ws.onclose = (event) => {
          const error = new Error("comet " + server + " closed the connection (code " + event.code + ")");
          if (subscribed) this._end(s, error); else fail(error);
        };
      });
    }

    _onFrame(s, text) {
      let frame;
      try { frame = parseFrame(this.key, text, !this.version); } catch (error) {
        return this._end(s, new Error("unreadable message from the comet: " + text.slice(0, 60)));
      }
      if (frame.ack) return this._beat(s);
      if (frame.refusal) return this._end(s, new Error("comet sent -" + frame.refusal));
      this.stats.live++;
      const m = frame.message;
      if (m.gid !== GID_PUBLIC && s.acks.arrived(m.mid)) this._sendAck(s, m);   // taken already (fetched)
      if (!s.catchingUp) return this._accept(s, m);
      if (s.live.length >= this.maxPending) return this._end(s, new Error(s.live.length + " live messages held"));
      s.live.add(m);
    }

    /** Schedules the next heartbeat "h" (after "+h" or a reply to the last one) and the wait for its reply. */
    _beat(s) {
      if (s.ended) return;
      clearTimeout(s.timers.beat);
      clearTimeout(s.timers.reply);
      s.timers.beat = setTimeout(() => {
        s.ws.send("h");
        s.timers.reply = setTimeout(() => {
          this.stats.heartbeatTimeouts++;
          this._end(s, new Error("no heartbeat reply in " + this.heartbeatTimeout + "s"));
        }, this.heartbeatTimeout * 1000);
      }, this.heartbeat * 1000);
    }

    /** Fetches from the last accepted mid and pmid until both lists of a page are empty (public ones are no
     *  longer asked once their list is), merged with the live messages held meanwhile. */
    async _catchUp(s) {
      let after = this.lastMid, pafter = this._fetchPublic ? this._public.fetchFrom() : null;
      for (;;) {
        if (s.ended) throw new Error("session ended");
        const page = await this._fetchPage(s, after, pafter);
        if (s.ended) throw new Error("session ended");
        this.stats.fetches++;
        if (page.trimmed) this._gap(0, after, page.messages);
        if (pafter !== null && page.publicTrimmed) this._gap(GID_PUBLIC, pafter, page.publicMessages);
        const fetched = page.messages.concat(pafter === null ? [] : page.publicMessages);
        if (!fetched.length) break;
        this.stats.fetched += fetched.length;
        for (const m of mergePage(s.live, fetched)) this._accept(s, m);
        after = advanced(after, page.messages);
        pafter = pafter === null || !page.publicMessages.length ? null : advanced(pafter, page.publicMessages);
      }
      for (const m of s.live.drain()) this._accept(s, m);
      s.catchingUp = false;
    }

    /** Hands `message` out unless it is a duplicate; then acks it (see AckTracker). */
    _accept(s, message) {
      if (s.ended) return;   // e.g. onMessage called close(): the rest is fetched again by the next subscriber
      const isPublic = message.gid === GID_PUBLIC;
      if (!(isPublic ? this._public.accept(message.mid) : this._cursor.accept(message))) {
        this.stats.duplicates++;
        return;
      }
      if (isPublic && message.mid !== this._public.newest) this.stats.late++;
      const taken = () => { if (s.acks.taken(message.mid, message.source === "live")) this._sendAck(s, message); };
      let result;
      try { result = this._on.message && this._on.message(message); } catch (error) {
        return console.error("pushcluster: onMessage failed, mid " + message.mid + " not acked", error);
      }
      if (isPublic) return;
      if (!result || typeof result.then !== "function") return taken();
      result.then(taken, (error) => console.error("pushcluster: onMessage failed, mid " + message.mid, error));
    }

    /** Sends "a<mid>" for a private message, when acks are on and its connection is still the live one. */
    _sendAck(s, message) {
      if (!this.ack || !this.version || s.ended || !s.ws || s.ws.readyState !== 1) return;
      s.ws.send("a" + message.mid);
      this.stats.acks++;
      this._call("ack", message);
    }

    _gap(gid, after, messages) {
      this.stats.gaps++;
      const next = messages.length ? messages[0].mid : null;   // the first mid after the gap
      this.lastGap = {key: this.key, gid: gid, afterMid: after, nextMid: next};
      this._call("gap", this.lastGap);
    }

    /** Handles a refusal: returns to retry, or throws SubscribeFailed when no retry can cure it. */
    async _refused(error) {
      if (error.refusal === "p") throw new SubscribeFailed("refused", "key=" + this.key + ": " + error.message);
      if (error.refusal !== "a") return;
      if (!this._tokenProvider) throw new SubscribeFailed("token_refused", error.message + "; no tokenProvider");
      if (++this._tokenRefusals > MAX_TOKEN_REFUSALS) {
        throw new SubscribeFailed("token_refused", this._tokenRefusals + " tokens refused in a row");
      }
      const token = await this._newToken();
      if (!token) throw new SubscribeFailed("token_refused", error.message + "; tokenProvider gave no token");
      this._token = token;
    }

    async _newToken() {
      let token;
      try { token = await this._tokenProvider(); } catch (error) { throw new Error("tokenProvider failed: " + error); }
      if (token !== null && token !== undefined && typeof token !== "string") {
        throw new SubscribeFailed("token_refused", "tokenProvider returned a " + typeof token + ", not a string");
      }
      return token || "";
    }

    /** Ends session `s` (once). Retries after the backoff, or fails for a SubscribeFailed. */
    _end(s, reason) {
      if (s.ended) return;
      this._cleanup(s);
      if (s !== this._session || this.state === "closed" || this.state === "failed") return;
      this._session = null;
      if (reason instanceof SubscribeFailed) return this._fail(reason);
      const delay = this._backoff.nextDelay();
      if (this._backoff.exhausted) {
        return this._fail(new SubscribeFailed("retries_exhausted", "gave up after " + this._backoff.failures +
                                              " attempts: " + (reason.message || reason)));
      }
      this._setState("backoff", {reason: String(reason.message || reason), delay: delay});
      this._retryTimer = setTimeout(() => this._attempt(), delay * 1000);
    }

    _cleanup(s) {
      s.ended = true;
      Object.keys(s.timers).forEach((name) => clearTimeout(s.timers[name]));
      s.aborts.splice(0).forEach((abort) => abort());
      if (s.ws) drop(s.ws);
    }

    _stop() {
      clearTimeout(this._retryTimer);
      if (this._session) this._cleanup(this._session);
      this._session = null;
      if (global.removeEventListener) global.removeEventListener("online", this._online);
    }

    _fail(error) {
      this.error = error;
      this._stop();
      this._setState("failed", {error: error});
    }

    _setState(state, detail) {
      this.state = state;
      this._call("state", state, detail || {});
    }

    _call(name, arg, detail) {
      const callback = this._on[name];
      if (!callback) return;
      try { callback(arg, detail); } catch (error) { console.error("pushcluster: on" + name + " failed", error); }
    }
  }

  const PushCluster = {
    Subscriber: Subscriber, SubscribeFailed: SubscribeFailed, _jsonp: jsonpCallbacks,
    // The pure helpers, exposed for tests and tools; not a stable API.
    logic: {cmpMid: cmpMid, toMid: toMid, midTexts: midTexts, parseFrame: parseFrame, parseMessage: parseMessage,
            parseFetchReply: parseFetchReply, parseLegacyFetch: parseLegacyFetch, lookback: lookback,
            Cursor: Cursor, PublicWindow: PublicWindow, AckTracker: AckTracker, LiveBuffer: LiveBuffer,
            mergePage: mergePage, reconnectPolicy: reconnectPolicy, Backoff: Backoff},
  };
  global.PushCluster = PushCluster;
  if (typeof module === "object" && module && module.exports) module.exports = PushCluster;
})(typeof globalThis !== "undefined" ? globalThis : typeof self !== "undefined" ? self : this);
