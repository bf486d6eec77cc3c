"""Transport overrides: parsing next hops and matching domains most specific first."""

from __future__ import annotations

import pytest

from mailfort.delivery.transport import Nexthop, TransportMap, parse_nexthop


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("relay.example", Nexthop("relay.example", 25)),
        ("Relay.Example:2526", Nexthop("relay.example", 2526)),
        ("127.0.0.1:2525", Nexthop("127.0.0.1", 2525)),
        ("[::1]:2525", Nexthop("::1", 2525)),
        ("[2001:db8::1]", Nexthop("2001:db8::1", 25)),
        ("2001:db8::1", Nexthop("2001:db8::1", 25)),
        ("[relay.example]:587", Nexthop("relay.example", 587)),  # as Postfix writes it
    ],
)
def test_parse_nexthop(text: str, expected: Nexthop) -> None:
    assert parse_nexthop(text, default_port=25) == expected


@pytest.mark.parametrize(
    "text",
    ["", "host:", "host:0", "host:65536", "host:x", "[::1", "[::1]x", "a b:25", "[::1]:", "a@b"],
)
def test_parse_nexthop_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_nexthop(text, default_port=25)


def test_nexthop_prints_back() -> None:
    assert str(Nexthop("::1", 25)) == "[::1]:25"
    assert str(Nexthop("relay.test", 2525)) == "relay.test:2525"


def test_route_most_specific_first() -> None:
    table = TransportMap(
        {
            "example.org": "exact:1",
            ".example.org": "sub:2",
            ".org": "org:3",
            "*": "smarthost:4",
        }
    )
    assert table.route("example.org") == Nexthop("exact", 1)
    assert table.route("EXAMPLE.org.") == Nexthop("exact", 1)
    assert table.route("a.example.org") == Nexthop("sub", 2)
    assert table.route("b.a.example.org") == Nexthop("sub", 2)
    assert table.route("other.org") == Nexthop("org", 3)
    assert table.route("example.com") == Nexthop("smarthost", 4)


def test_no_route_means_mx() -> None:
    table = TransportMap({"example.org": "relay:25"})
    assert table.route("example.com") is None
    assert table.route("sub.example.org") is None
    assert not TransportMap({})
