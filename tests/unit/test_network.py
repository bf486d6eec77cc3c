"""Client networks: the unit per-client bounds count in."""

from __future__ import annotations

import pytest

from mailfort.network import Networks, share_of


def test_addresses_fall_into_their_networks() -> None:
    nets = Networks()
    assert nets.of("192.0.2.77") == "192.0.2.0/24"
    assert nets.of("192.0.2.1") == nets.of("192.0.2.254")
    assert nets.of("192.0.3.1") != nets.of("192.0.2.1")
    assert nets.of("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert nets.of("2001:db8:1:2::ffff") == nets.of("2001:db8:1:2:aaaa::1")
    assert nets.of("fe80::1%eth0") == "fe80::/64"
    # An IPv4 client seen through an IPv6 socket is the same client.
    assert nets.of("::ffff:192.0.2.9") == "192.0.2.0/24"
    assert nets.of("unknown") == "unknown"


def test_prefixes_are_settings() -> None:
    nets = Networks(v4_prefix=32, v6_prefix=48)
    assert nets.of("192.0.2.77") == "192.0.2.77/32"
    assert nets.of("2001:db8:1:2::1") == "2001:db8:1::/48"
    with pytest.raises(ValueError):
        Networks(v4_prefix=4)


def test_a_share_is_at_least_one() -> None:
    assert share_of(1000, 0.25) == 250
    assert share_of(3, 0.25) == 1
    assert share_of(0, 0.5) == 1
