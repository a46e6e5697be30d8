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
