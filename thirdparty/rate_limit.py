"""PURE per-source-address admission of new connections: a cap on open connections and a token bucket on new ones.

No sockets, no clock: the caller passes ``now`` (monotonic seconds). :class:`AddressLimiter` keeps one small
:class:`AddressSlot` per source address that has open connections (and, with a rate, per address whose bucket is
still refilling); a connection holds a reference to its address's slot and gives it back with
:meth:`AddressLimiter.release`. Nothing runs per connection between those two calls: no timer, no task.

* **Cap**: an address with ``max_conns`` open connections gets no more (``Refused.CONNS``).
* **Rate**: each address has a bucket of ``burst`` tokens refilled at ``rate`` per second; a new connection
  takes one, and an address whose bucket is empty is refused (``Refused.RATE``). A refused connection takes
  nothing, so a client retrying in a loop does not push its own recovery further out.

An address's slot is dropped as soon as its last connection closes and its bucket is full again; a slot whose
bucket is still refilling waits in an idle list that :meth:`AddressLimiter.sweep` (one periodic call of the node)
clears. So the limiter holds an entry only for addresses with open connections or that connected within the last
``burst / rate`` seconds, and forgetting an address never resets a bucket early (a client that opens and closes
connections in a loop is limited as well as one that keeps them).

Addresses are grouped: an IPv4 address (also IPv4-mapped IPv6) is its own group; IPv6 addresses share a group per
/64, the block one subscriber line usually gets. Addresses in ``exempt`` networks (by default none here; the comet
exempts loopback) are not limited or tracked. 0 turns a limit off.
"""
from __future__ import annotations

import enum
import ipaddress
from typing import Iterable

IPV6_GROUP_PREFIX = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(enum.Enum):
    """Why a new connection was refused; the value names it in counters and logs."""

    CONNS = "conns_per_addr"  # the address has max_conns open connections
    RATE = "conn_rate"        # the address's bucket is empty


class AddressSlot:
    """One address group: open connections and its token bucket (``tokens`` as of ``stamp``)."""

    __slots__ = ("group", "count", "tokens", "stamp")

    def __init__(self, group: str, tokens: float, stamp: float) -> None:
        self.group = group
        self.count = 0
        self.tokens = tokens
        self.stamp = stamp


UNTRACKED = AddressSlot("", 0.0, 0.0)  # the slot of exempt addresses: never counted, never stored


def address_group(host: str) -> str:
    """The group an address is limited as: IPv4 as it is, IPv6 by its /64 ("2001:db8:1:2::/64")."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, IPV6_GROUP_PREFIX), strict=False))


def parse_networks(texts: Iterable[str]) -> list[Network]:
    """``["127.0.0.0/8", "::1"]`` -> networks; ValueError naming a bad entry."""
    networks: list[Network] = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or network") from None
    return networks


class AddressLimiter:
    """Admission of new connections by source address; see the module docstring."""

    __slots__ = ("max_conns", "rate", "burst", "exempt", "_slots", "_idle")

    def __init__(self, *, max_conns: int = 0, rate: float = 0.0, burst: int = 0,
                 exempt: Iterable[Network] = ()) -> None:
        if max_conns < 0 or rate < 0 or burst < 0:
            raise ValueError("max_conns, rate and burst must be >= 0")
        if (rate > 0) != (burst > 0):
            raise ValueError("rate and burst must both be set (or both 0)")
        self.max_conns = max_conns
        self.rate = rate
        self.burst = burst
        self.exempt = tuple(exempt)
        self._slots: dict[str, AddressSlot] = {}
        self._idle: dict[str, AddressSlot] = {}  # no connection left, bucket still refilling

    @property
    def enabled(self) -> bool:
        return self.max_conns > 0 or self.rate > 0

    def __len__(self) -> int:
        """Address groups tracked right now (with connections, or refilling)."""
        return len(self._slots)

    def open_count(self, host: str) -> int:
        """Open connections counted for ``host``'s group."""
        slot = self._slots.get(address_group(host))
        return slot.count if slot is not None else 0

    def acquire(self, host: str, now: float) -> AddressSlot | Refused:
        """Admit a new connection from ``host``: its slot (counted; give it back with :meth:`release`), or why
        it is refused. Exempt hosts get :data:`UNTRACKED`."""
        if not self.enabled or self._is_exempt(host):
            return UNTRACKED
        group = address_group(host)
        slot = self._slots.get(group)
        if slot is None:
            slot = AddressSlot(group, float(self.burst), now)
        elif self.max_conns and slot.count >= self.max_conns:
            return Refused.CONNS
        if self.rate:
            tokens = self._refilled(slot, now)
            if tokens < 1.0:
                slot.tokens, slot.stamp = tokens, now
                return Refused.RATE
            slot.tokens, slot.stamp = tokens - 1.0, now
        if slot.count == 0:
            self._slots[group] = slot
            self._idle.pop(group, None)
        slot.count += 1
        return slot

    def release(self, slot: AddressSlot, now: float) -> None:
        """A connection admitted with ``slot`` closed."""
        if slot is UNTRACKED or slot.count <= 0:
            return
        slot.count -= 1
        if slot.count == 0:
            if self._refilled(slot, now) >= self.burst:
                self._drop(slot)
            else:
                self._idle[slot.group] = slot

    def sweep(self, now: float) -> int:
        """Forget idle addresses whose bucket is full again; return how many were dropped."""
        full = [slot for slot in self._idle.values() if self._refilled(slot, now) >= self.burst]
        for slot in full:
            self._drop(slot)
        return len(full)

    def exempts(self, host: str) -> bool:
        """True when ``host`` is in an exempt network (never limited, never tracked)."""
        return self._is_exempt(host)

    def tracks(self, host: str) -> bool:
        """True when ``host``'s group has an entry (open connections, or a bucket still refilling)."""
        return address_group(host) in self._slots

    def retry_after(self, host: str, now: float) -> float:
        """Seconds until ``host``'s bucket holds a whole token again (0.0 when it does, or is not tracked)."""
        slot = self._slots.get(address_group(host))
        if slot is None or not self.rate:
            return 0.0
        return max(0.0, (1.0 - self._refilled(slot, now)) / self.rate)

    def _refilled(self, slot: AddressSlot, now: float) -> float:
        if not self.rate:
            return float(self.burst)
        return min(float(self.burst), slot.tokens + max(0.0, now - slot.stamp) * self.rate)

    def _drop(self, slot: AddressSlot) -> None:
        self._idle.pop(slot.group, None)
        if self._slots.get(slot.group) is slot:
            del self._slots[slot.group]

    def _is_exempt(self, host: str) -> bool:
        if not self.exempt:
            return False
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.exempt)


class RequestLimiter:
    """Admission of requests by source address: :class:`AddressLimiter`'s token bucket, each request being a
    connection that closes at once (it takes a token and holds no slot).

    No timer: :meth:`admit` sweeps the refilled addresses itself, at most once per ``burst / rate`` seconds (1 to
    60), so an address is forgotten at most about twice that long after its last request. At most ``max_tracked``
    address groups are tracked: when the table is full (until the next sweep), a request from an address not in it is
    admitted without being limited, and counted in ``untracked`` (failing open: one client spread over that many
    addresses is beyond what a per-address limit can stop, and the addresses already tracked stay limited).
    """

    __slots__ = ("addresses", "max_tracked", "untracked", "_sweep_every", "_next_sweep")

    def __init__(self, *, rate: float, burst: int, exempt: Iterable[Network] = (), max_tracked: int = 100_000) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be >= 1")
        self.addresses = AddressLimiter(rate=rate, burst=burst, exempt=exempt)
        self.max_tracked = max_tracked
        self.untracked = 0  # requests admitted unlimited because the table was full
        self._sweep_every = min(60.0, max(1.0, burst / rate)) if rate else 60.0
        self._next_sweep = 0.0

    @property
    def enabled(self) -> bool:
        return self.addresses.enabled

    def __len__(self) -> int:
        return len(self.addresses)

    def admit(self, host: str, now: float) -> float:
        """0.0 when a request from ``host`` may go on; else the seconds until its address has a token again."""
        limiter = self.addresses
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every
            limiter.sweep(now)
        if len(limiter) >= self.max_tracked and not limiter.tracks(host) and not limiter.exempts(host):
            self.untracked += 1  # no sweep here: a flood of new addresses must not make each request O(table)
            return 0.0
        slot = limiter.acquire(host, now)
        if isinstance(slot, Refused):
            return max(limiter.retry_after(host, now), 1e-3)
        limiter.release(slot, now)
        return 0.0
