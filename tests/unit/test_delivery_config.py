"""The [delivery] table: defaults, a full table with transports, and one error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailfort.config import DeliveryConfig, load
from mailfort.errors import ConfigError

FULL = """\
[delivery]
enabled = true
helo_name = "out.example.test"
lifetime = 86400
delay_warning = 0
retry_base = 60
retry_max = 600
max_in_flight = 20
destination_concurrency = 4
destination_recipients = 10
connect_timeout = 5
command_timeout = 60
idle_timeout = 2
tls = "verify"
smtp_port = 2525
dns_nameservers = ["127.0.0.1:5353", "::1"]
dns_timeout = 3

[delivery.transports]
"Example.ORG" = "127.0.0.1:2526"
".example.net" = "[relay.example]:587"
"*" = "smarthost.example:25"
"""


def load_text(tmp_path: Path, text: str) -> DeliveryConfig:
    path = tmp_path / "mailfort.toml"
    path.write_text(text)
    return load(path).delivery


def test_defaults() -> None:
    d = DeliveryConfig()
    assert d.enabled and d.tls == "may" and d.smtp_port == 25
    assert d.lifetime == 5 * 86400 and d.delay_warning == 4 * 3600
    assert d.transports == {} and d.dns_nameservers == ()


def test_a_full_table(tmp_path: Path) -> None:
    d = load_text(tmp_path, FULL)
    assert d.helo_name == "out.example.test"
    assert d.lifetime == 86400.0 and d.delay_warning == 0.0
    assert d.destination_concurrency == 4 and d.tls == "verify"
    assert d.dns_nameservers == ("127.0.0.1:5353", "::1")
    assert d.transports == {
        "example.org": "127.0.0.1:2526",
        ".example.net": "[relay.example]:587",
        "*": "smarthost.example:25",
    }


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[delivery]\ntls = "always"\n', "delivery.tls"),
        ("[delivery]\ndestination_concurrency = 0\n", "delivery.destination_concurrency"),
        ('[delivery]\nhelo_name = "a b"\n', "delivery.helo_name"),
        ('[delivery]\ndns_nameservers = ["127.0.0.1:x"]\n', "delivery.dns_nameservers"),
        ('[delivery]\ndns_nameservers = ["ns.example"]\n', "delivery.dns_nameservers"),
        ("[delivery]\nsmtp_port = 0\n", "delivery.smtp_port"),
        ('[delivery.transports]\n"a.test" = "host:"\n', "delivery.transports.a.test"),
        ('[delivery.transports]\n"a.test" = 25\n', "delivery.transports"),
        ("[delivery]\nlifetime = -1\n", "delivery.lifetime"),
        ("[delivery]\nno_such_key = 1\n", "delivery.no_such_key"),
        ("[delivery]\nmta_sts_port = 0\n", "delivery.mta_sts_port"),
        ('[delivery]\ntls_ca_file = "no-such-ca.pem"\n', "delivery.tls_ca_file"),
        ('[mta_sts]\nmode = "strict"\n', "mta_sts.mode"),
        ("[mta_sts]\nmax_age = 31557601\n", "mta_sts.max_age"),
        ('[tlsrpt]\nenabled = "yes"\n', "tlsrpt.enabled"),
    ],
)
def test_mistakes_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_text(tmp_path, text)
    assert raised.value.key == key


def test_source_address_must_be_an_ip_address(tmp_path: Path) -> None:
    path = tmp_path / "mailfort.toml"
    path.write_text('[delivery]\nsource_address = "mx.example.test"\n')
    with pytest.raises(ConfigError, match=r"delivery\.source_address"):
        load(path)


def test_a_relative_ca_file_is_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("")
    d = load_text(tmp_path, '[delivery]\ntls_ca_file = "ca.pem"\n')
    assert d.tls_ca_file == str(tmp_path / "ca.pem")
    assert d.mta_sts and d.dane and d.mta_sts_port == 443
