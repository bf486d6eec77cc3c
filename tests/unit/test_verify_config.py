"""The [verify] table: defaults, a full table, one error per mistake, and the node's wiring."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mailfort.config import VerifyConfig, load
from mailfort.errors import ConfigError
from mailfort.node import incoming_checks
from mailfort.trust.dmarc import Policy

FULL = """\
hostname = "mx.example.org"

[verify]
enabled = true
reject = "quarantine"
temperror = "accept"
forwarders = ["192.0.2.0/24", "2001:db8::/32"]
dns_timeout = 2
spf_timeout = 10

[verify.domains]
"Lists.Example.ORG" = "none"
"strict.example" = "reject"
"""


def test_defaults() -> None:
    v = VerifyConfig()
    assert (v.enabled, v.reject, v.temperror, v.forwarders, v.domains) == (
        True,
        "reject",
        "defer",
        (),
        {},
    )


def test_a_full_table_reaches_the_verifier(tmp_path: Path) -> None:
    path = tmp_path / "mailfort.toml"
    path.write_text(FULL)
    config = load(path)
    assert config.verify.domains == {"lists.example.org": "none", "strict.example": "reject"}
    verifier = incoming_checks(config)
    assert verifier is not None
    settings = verifier.settings
    assert verifier.authserv_id == "mx.example.org"
    assert settings.reject is Policy.QUARANTINE
    assert settings.caps == {"lists.example.org": Policy.NONE, "strict.example": Policy.REJECT}
    assert not settings.defer_on_temperror
    assert settings.forwarders == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert settings.spf_timeout == 10
    path.write_text("[verify]\nenabled = false\n")
    assert incoming_checks(load(path)) is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[verify]\nreject = "bounce"\n', "verify.reject"),
        ('[verify]\ntemperror = "retry"\n', "verify.temperror"),
        ('[verify]\nforwarders = ["not a network"]\n', "verify.forwarders"),
        ('[verify.domains]\n"a.example" = "drop"\n', "verify.domains.a.example"),
        ("[verify]\ndns_timeout = 0\n", "verify"),
        ("[verify]\nno_such_key = 1\n", "verify.no_such_key"),
    ],
)
def test_mistakes_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "mailfort.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert raised.value.key == key
