"""A reconnecting subscriber for the fault tests: it behaves as a real client and records everything it sees.

What a client does (docs/protocol.md, README "What a client sees"), repeated until told to stop:

1. ask the web node which comet serves its key (``GET /1/server/get?k=KEY&p=1`` for WebSocket, ``p=2`` for TCP);
2. connect and subscribe there (heartbeat ``HEARTBEAT`` seconds, version "1.0": the new JSON form), and send a
   heartbeat every third of it;
3. catch up: ``GET /1/msg/get?k=KEY&m=LAST`` from the last accepted mid, again from the last fetched mid until a
   reply is empty; live messages that arrive meanwhile are held, then merged with the fetched ones in mid order;
4. live: accept each message whose mid is above the last accepted one.

Any failure (lookup refused or failing, connect refused, ``-n``, the connection closed, a fetch failing) ends the
session; the next one starts after a short jittered backoff (from the test's seeded random generator).

Unlike the SDK (``comet/subscriber.py``), which drops what it has already seen, this one *counts* it, so that the
invariants of the fault tests can be checked:

* ``duplicates``: a mid received live twice (on any connections), or a fetch that returned a mid at or below the
  one it asked from — never expected;
* ``out_of_order``: on one connection, a live mid not above the previous one; or a live stored message (expire >
  0) below the last accepted mid that no fetch returned, i.e. one the client skipped and cannot fetch any more —
  never expected;
* ``overlaps``: a live message that a fetch already returned (stored, then fetched before its live copy was read):
  expected, dropped by mid;
* ``late_online``: an online-only message (expire 0, never stored) read after a fetch returned a newer stored
  one: the client drops it by mid; expected, and allowed since online-only messages may be missed;
* ``trimmed``: a fetch reply flagged ``trimmed`` (a gap the server cannot fill) — never expected here (the tests
  keep every message).

Messages are the push loop's JSON ``{"k": key, "n": n, "e": expire}``; the expire tells stored from online-only.

With ``broadcasts=True`` the subscriber takes broadcasts (gid 1) too: live ones are checked per connection apart from
the key's own, each catch-up asks ``p=`` as well (10 s below the newest public mid accepted, as the SDK does), and
``final_fetch`` also fetches every public message from ``p=0`` (a full resync); tests/chaos/public.py counts them.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Collection

import httpx

from tests.chaos.links import CALL_DEADLINE, Link, Live, SessionEnded, TcpLink, WsLink
from tests.chaos.public import PublicSide

WS, TCP = "ws", "tcp"
PROTO = {WS: 1, TCP: 2}          # the p= of /1/server/get
HEARTBEAT = 30                    # seconds (the comet's default minimum)
MAX_ANOMALIES = 20                # descriptions kept per subscriber


@dataclass
class Tally:
    """What one subscriber saw, summed over its sessions."""

    lookups: int = 0
    sessions: int = 0                                          # subscribes answered with +h
    live: int = 0                                              # frames received from comets
    fetched: int = 0                                           # messages returned by /1/msg/get
    accepted_live: int = 0
    accepted_fetched: int = 0
    overlaps: int = 0
    late_online: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    trimmed: int = 0
    errors: int = 0                                            # sessions ended by an unexpected exception
    ended: Counter[str] = field(default_factory=Counter)      # why sessions ended
    anomalies: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.anomalies) < MAX_ANOMALIES:
            self.anomalies.append(text)


class Subscriber:
    """One key's client over one transport (``WS`` or ``TCP``), reconnecting through the web node."""

    def __init__(self, key: str, transport: str, public: str, http: httpx.AsyncClient, rng: random.Random, *,
                 heartbeat: int = HEARTBEAT, broadcasts: bool = False) -> None:
        self.key, self.transport, self.public, self.http = key, transport, public, http
        self.broadcasts = broadcasts
        self.rng = rng
        self.heartbeat = heartbeat
        self.tally = Tally()
        self.accepted: list[int] = []
        self.last = 0
        self.live_now = False          # subscribed and caught up
        self._live_seen: set[int] = set()
        self._fetched: set[int] = set()
        self.pub = PublicSide(self.name, self.tally.note)

    @property
    def name(self) -> str:
        return f"{self.key}/{self.transport}"

    async def run(self, stop: asyncio.Event) -> None:
        """Sessions until ``stop`` is set."""
        failures = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                failures = 0
            except SessionEnded as exc:
                self.tally.ended[str(exc).split(":")[0]] += 1
                failures += 1
            except Exception as exc:   # a bug of this client or something no client should see: counted, go on
                self.tally.errors += 1
                self.tally.note(f"{self.name}: session failed: {exc!r}")
                failures += 1
            finally:
                self.live_now = False
            if not stop.is_set():
                pause = min(1.0, 0.05 * 2 ** min(failures, 5)) * self.rng.uniform(0.5, 1.0)
                try:
                    await asyncio.wait_for(stop.wait(), pause)
                except TimeoutError:
                    pass

    async def _session(self, stop: asyncio.Event) -> None:
        server = await self._lookup()
        opener = WsLink.open if self.transport == WS else TcpLink.open
        link = await opener(server, self.key, self.heartbeat)
        self.tally.sessions += 1
        queue: asyncio.Queue[Live | None] = asyncio.Queue()
        tasks = [asyncio.create_task(self._read(link, queue)), asyncio.create_task(self._beat(link))]
        try:
            fetched, pfetched = await self._fetch_all(self.pub.fetch_from() if self.broadcasts else None)
            held: list[Live] = []
            while not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    raise SessionEnded("closed while catching up")
                held.append(item)
            merged = sorted([(mid, 0, Live(mid, 1)) for mid in fetched] + [(m.mid, 1, m) for m in held if not m.gid],
                            key=lambda entry: (entry[0], entry[1]))
            for _mid, from_live, item in merged:
                self._take(item, live=bool(from_live))
            for mid in pfetched:
                self.pub.take(mid, live=False)
            for item in held:
                if item.gid:
                    self.pub.take(item.mid, live=True)
            self.live_now = True
            stopped = asyncio.ensure_future(stop.wait())
            try:
                while True:
                    got = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait({got, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    if got not in done:
                        got.cancel()
                        return
                    item = got.result()
                    if item is None:
                        raise SessionEnded("closed by the comet")
                    if item.gid:
                        self.pub.take(item.mid, live=True)
                    else:
                        self._take(item, live=True)
            finally:
                stopped.cancel()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await link.close()

    async def _lookup(self) -> str:
        self.tally.lookups += 1
        try:
            reply = await self._get("/1/server/get", {"k": self.key, "p": PROTO[self.transport]})
        except (httpx.HTTPError, TimeoutError, ValueError) as exc:
            raise SessionEnded(f"lookup: {type(exc).__name__}") from None
        if reply.get("ret") != 0:
            raise SessionEnded(f"lookup ret {reply.get('ret')}")
        return str(reply["data"]["server"])

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        response = await asyncio.wait_for(self.http.get(f"{self.public}{path}", params=params), CALL_DEADLINE)
        doc: dict[str, Any] = response.json()
        return doc

    async def _fetch_all(self, pafter: int | None = None) -> tuple[list[int], list[int]]:
        """Every stored mid after the last accepted one and, when ``pafter`` is given, every public mid after it
        (several pages, until a reply is empty); SessionEnded when a fetch fails."""
        mids: list[int] = []
        pmids: list[int] = []
        pseen: set[int] = set()
        after = self.last
        while True:
            params: dict[str, Any] = {"k": self.key, "m": after}
            if pafter is not None:
                params["p"] = pafter
            try:
                reply = await self._get("/1/msg/get", params)
            except (httpx.HTTPError, TimeoutError, ValueError) as exc:
                raise SessionEnded(f"fetch: {type(exc).__name__}") from None
            if reply.get("ret") != 0:
                raise SessionEnded(f"fetch ret {reply.get('ret')}")
            data = reply.get("data") or {}
            if data.get("trimmed"):
                self.tally.trimmed += 1
                self.tally.note(f"{self.name}: fetch after {after} was trimmed")
            batch = [int(item["mid"]) for item in data.get("msgs", [])]
            pbatch = [int(item["mid"]) for item in data.get("pmsgs", [])]
            if pafter is not None and (pbatch or data.get("ptrimmed")):
                pmids.extend(self.pub.fetched_page(pafter, pbatch, bool(data.get("ptrimmed")), pseen))
                pafter = max([pafter, *pbatch])
            if not batch:
                if not pbatch:
                    return mids, pmids
                continue
            self.tally.fetched += len(batch)
            for mid in batch:
                if mid <= after:
                    self.tally.duplicates += 1
                    self.tally.note(f"{self.name}: fetch after {after} returned {mid}")
                else:
                    mids.append(mid)
                    self._fetched.add(mid)
                    after = mid
            after = max(after, batch[-1])

    async def _read(self, link: Link, queue: asyncio.Queue[Live | None]) -> None:
        """Frames of one connection into ``queue``, checked as they arrive (None when it closes)."""
        previous = pprevious = 0
        try:
            while (item := await link.next()) is not None:
                if item.gid:
                    self.pub.received(item.mid, pprevious)
                    pprevious = max(pprevious, item.mid)
                    queue.put_nowait(item)
                    continue
                self.tally.live += 1
                if item.mid in self._live_seen:
                    self.tally.duplicates += 1
                    self.tally.note(f"{self.name}: mid {item.mid} received live twice")
                elif item.mid <= previous:
                    self.tally.out_of_order += 1
                    self.tally.note(f"{self.name}: mid {item.mid} after {previous} on one connection")
                self._live_seen.add(item.mid)
                previous = max(previous, item.mid)
                queue.put_nowait(item)
        except (SessionEnded, ValueError, KeyError) as exc:
            self.tally.note(f"{self.name}: unreadable frame: {exc}")
        queue.put_nowait(None)

    async def _beat(self, link: Link) -> None:
        while True:
            await asyncio.sleep(self.heartbeat / 3)
            await link.heartbeat()

    def _take(self, item: Live, *, live: bool) -> None:
        """The cursor: accept a mid above the last one; classify the others (see the module docstring)."""
        if item.mid > self.last:
            self.last = item.mid
            self.accepted.append(item.mid)
            if live:
                self.tally.accepted_live += 1
            else:
                self.tally.accepted_fetched += 1
            return
        if not live:
            return  # fetched and also held live: counted when the live copy comes
        if item.mid in self._fetched:
            self.tally.overlaps += 1
        elif item.expire == 0:
            self.tally.late_online += 1
        else:
            self.tally.out_of_order += 1
            self.tally.note(f"{self.name}: stored mid {item.mid} arrived after {self.last} and was never fetched")

    async def final_fetch(self) -> None:
        """Fetch what is still stored after the last accepted mid (the "or is fetchable" of the invariant) and,
        taking broadcasts, every stored public message from ``p=0`` (a full resync)."""
        self.pub.final_from = len(self.pub.accepted)
        mids, pmids = await self._fetch_all(0 if self.broadcasts else None)
        for mid in mids:
            self._take(Live(mid, 1), live=False)
        for mid in pmids:
            self.pub.take(mid, live=False)

    async def wait_for(self, mid: int, timeout: float, pmids: Collection[int] = ()) -> bool:
        """True once this subscriber is live and has accepted ``mid`` or a later one, and every public mid of
        ``pmids`` (False after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.live_now and self.last >= mid and self.pub.has_all(pmids):
                return True
            await asyncio.sleep(0.05)
        return False
