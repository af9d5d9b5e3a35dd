"""Nexmark's events as the host's `nexmark` source encodes them (see
`Env.nexmark`): a tag byte (0 person, 1 auction, 2 bid), the integer fields
as little-endian 64-bit integers, then the strings, each as a little-endian
16-bit length and its UTF-8 bytes."""

from dataclasses import dataclass


@dataclass
class Person:
    id: int
    name: str
    email_address: str
    credit_card: str
    city: str
    state: str
    date_time: int
    extra: str


@dataclass
class Auction:
    id: int
    item_name: str
    description: str
    initial_bid: int
    reserve: int
    date_time: int
    expires: int
    seller: int
    category: int
    extra: str


@dataclass
class Bid:
    auction: int
    bidder: int
    price: int
    channel: str
    url: str
    date_time: int
    extra: str


def _ints(raw, n):
    return [int.from_bytes(raw[1 + 8 * i : 9 + 8 * i], "little", signed=True) for i in range(n)]


def _strings(raw, off, n):
    out = []
    for _ in range(n):
        if off + 2 > len(raw):
            raise ValueError("not a Nexmark event: truncated")
        length = int.from_bytes(raw[off : off + 2], "little")
        off += 2
        if off + length > len(raw):
            raise ValueError("not a Nexmark event: truncated")
        out.append(bytes(raw[off : off + length]).decode())
        off += length
    if off != len(raw):
        raise ValueError("not a Nexmark event: bytes after the end")
    return out


def decode(raw):
    """A `Person`, `Auction` or `Bid` from a record of the `nexmark` source."""
    tag = raw[0] if len(raw) > 0 else None
    if tag == 0 and len(raw) >= 17:
        i, dt = _ints(raw, 2)
        s = _strings(raw, 17, 6)
        return Person(i, s[0], s[1], s[2], s[3], s[4], dt, s[5])
    if tag == 1 and len(raw) >= 57:
        i, initial, reserve, dt, expires, seller, category = _ints(raw, 7)
        s = _strings(raw, 57, 3)
        return Auction(i, s[0], s[1], initial, reserve, dt, expires, seller, category, s[2])
    if tag == 2 and len(raw) >= 33:
        auction, bidder, price, dt = _ints(raw, 4)
        s = _strings(raw, 33, 3)
        return Bid(auction, bidder, price, s[0], s[1], dt, s[2])
    raise ValueError(f"not a Nexmark event (tag {tag}, {len(raw)} bytes)")
