"""Configuration: defaults without a file, a full file, and one clear error per kind of mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailfort.config import Config, ListenConfig, load, parse_hostport
from mailfort.errors import ConfigError

FULL = """\
hostname = "mx.example.test"
data_dir = "state"
local_domains = ["Example.TEST.", "other.test"]
recipient_delimiter = "-"
node_name = "node-a"
postmaster = "Ops@Example.TEST"

[listen]
smtp = "0.0.0.0:25"
submission = "[::1]:587"
submissions = ""
imap = "127.0.0.1:143"
imaps = ""
pop3 = ""
pop3s = ""
http = "127.0.0.1:8080"

[tls]
cert = "cert.pem"
key = "/etc/ssl/private/key.pem"

[limits]
max_message_size = 10485760
max_recipients = 50
max_connections = 200
max_connections_per_ip = 5
smtp_idle_timeout = 60
smtp_session_timeout = 600.5
auth_failures_per_ip = 3
auth_failure_window = 300.0
auth_failure_delay = 0.5
auth_failures_per_network = 12
auth_failures_per_account = 7

[store]
url = "sqlite:///var/lib/mailfort/store.sqlite3"

[queue]
lease_seconds = 10.0
poll_interval = 0.5
local_retry_seconds = 30

[auth]
allow_plaintext_loopback = true
known_network_days = 7.5

[submission.senders]
"Alice@example.test" = ["ceo@example.test", "@News.example.test"]
"@example.test" = ["noreply@example.test"]
"""


def write(tmp_path: Path, text: str | bytes, name: str = "mailfort.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def error_for(tmp_path: Path, text: str | bytes) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, text))
    assert "\n" not in str(raised.value)
    return raised.value


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./mailfort.toml here
    config = load(None)
    assert config == Config(hostname=config.hostname, node_name=config.node_name)
    assert config.source is None
    assert config.hostname
    assert config.data_dir == Path("var")
    assert config.local_domains == ()
    assert config.listen.smtp == "127.0.0.1:2525"
    assert config.listen.submission == "127.0.0.1:2587"
    assert config.listen.submissions == "127.0.0.1:2465"
    assert config.tls.cert == config.tls.key == ""
    assert config.limits.max_message_size == 25 * 1024 * 1024
    assert config.store.url == ""
    # Every default listener is valid and on an unprivileged port.
    for name in ListenConfig.__dataclass_fields__:
        parsed = parse_hostport(name, getattr(config.listen, name))
        assert parsed is not None and parsed[1] >= 1024


def test_default_file_in_the_working_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, 'hostname = "here.test"\n')
    monkeypatch.chdir(tmp_path)
    assert load(None).hostname == "here.test"


def test_a_full_valid_file(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("cert")
    key = tmp_path / "key.pem"
    key.write_text("key")
    path = write(tmp_path, FULL.replace("/etc/ssl/private/key.pem", str(key)))
    config = load(path)
    assert config.source == path
    assert config.hostname == "mx.example.test"
    assert config.data_dir == tmp_path / "state"  # relative to the file, not the cwd
    assert config.local_domains == ("example.test", "other.test")
    assert config.recipient_delimiter == "-"
    assert config.node_name == "node-a"
    assert config.listen.smtp == "0.0.0.0:25"
    assert parse_hostport("listen.submission", config.listen.submission) == ("::1", 587)
    assert config.listen.submissions == ""
    assert Path(config.tls.cert) == tmp_path / "cert.pem"
    assert Path(config.tls.key) == key
    assert config.limits.max_recipients == 50
    assert config.limits.smtp_idle_timeout == 60.0
    assert isinstance(config.limits.smtp_idle_timeout, float)
    assert config.limits.smtp_session_timeout == 600.5
    assert config.store.url == "sqlite:///var/lib/mailfort/store.sqlite3"
    assert config.queue.local_retry_seconds == 30.0
    assert config.auth.allow_plaintext_loopback is True
    assert config.postmaster == "ops@example.test"
    assert config.submission.senders == {
        "alice@example.test": ("ceo@example.test", "@news.example.test"),
        "@example.test": ("noreply@example.test",),
    }
    assert config.limits.auth_failures_per_network == 12
    assert config.limits.auth_failures_per_account == 7
    assert config.auth.known_network_days == 7.5


def test_relative_tls_paths_are_found_beside_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "c.pem").write_text("c")
    (conf / "k.pem").write_text("k")
    path = write(conf, '[tls]\ncert = "c.pem"\nkey = "k.pem"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load(path)
    assert Path(config.tls.cert) == conf / "c.pem"
    assert Path(config.tls.key) == conf / "k.pem"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('hostnme = "x"\n', "hostnme", "unknown key"),
        ("[listen]\nsmtpd = '127.0.0.1:25'\n", "listen.smtpd", "unknown key"),
        ("[limit]\nmax_recipients = 5\n", "limit", "unknown key"),
        ("[limits]\nmax_recipients = '5'\n", "limits.max_recipients", "integer"),
        ("[limits]\nmax_recipients = true\n", "limits.max_recipients", "integer"),
        ("[limits]\nmax_recipients = 1.5\n", "limits.max_recipients", "integer"),
        ("[limits]\nmax_connections = -1\n", "limits.max_connections", "negative"),
        ("[limits]\nmax_recipients = 0\n", "limits.max_recipients", "at least 1"),
        ("[limits]\nmax_message_size = 100\n", "limits.max_message_size", "at least"),
        ("[limits]\nsmtp_idle_timeout = 'slow'\n", "limits.smtp_idle_timeout", "number"),
        ("[limits]\nsmtp_idle_timeout = nan\n", "limits.smtp_idle_timeout", "finite"),
        ("[limits]\nsmtp_idle_timeout = inf\n", "limits.smtp_idle_timeout", "finite"),
        ("[limits]\nsmtp_stress_idle_timeout = 0.1\n", "limits.smtp_stress_idle_timeout", "least"),
        ("[auth]\nallow_plaintext_loopback = 1\n", "auth.allow_plaintext_loopback", "true"),
        ("[cluster]\nheartbeat_seconds = 0\n", "cluster.heartbeat_seconds", "at least"),
        ("[cluster]\nmaildrop_lease_seconds = 0.01\n", "cluster.maildrop_lease_seconds", "least"),
        ("[cluster]\ndrain_seconds = -1\n", "cluster.drain_seconds", "negative"),
        ("hostname = 5\n", "hostname", "string"),
        ('hostname = ""\n', "hostname", "empty"),
        ("data_dir = 5\n", "data_dir", "path"),
        ("local_domains = 'a.test'\n", "local_domains", "list"),
        ("local_domains = [1]\n", "local_domains", "list"),
        ('recipient_delimiter = "+-"\n', "recipient_delimiter", "one character"),
        ('hostname = "mx.test\\r\\nX-Forged: 1"\n', "hostname", "not a host name"),
        ('hostname = "mx test"\n', "hostname", "not a host name"),
        ('local_domains = ["a.test", "not a domain"]\n', "local_domains", "not a domain"),
        ('local_domains = ["user@a.test"]\n', "local_domains", "not a domain"),
        ('postmaster = "postmaster"\n', "postmaster", "not an address"),
        ('postmaster = "a b@example.test"\n', "postmaster", "not an address"),
        ("postmaster = 5\n", "postmaster", "string"),
        ("[submission]\nsenders = 'x'\n", "submission.senders", "lists of strings"),
        ("[submission.senders]\n'a@b.test' = 'c@b.test'\n", "submission.senders", "lists"),
        ("[submission.senders]\n'a@b.test' = [1]\n", "submission.senders", "lists of strings"),
        (
            "[submission.senders]\n'alice' = ['c@b.test']\n",
            "submission.senders.alice",
            '"@domain"',
        ),
        (
            "[submission.senders]\n'@b.test' = ['*']\n",
            "submission.senders.@b.test",
            "'*'",
        ),
        (
            "[submission.senders]\n'a@b.test' = ['@not a domain']\n",
            "submission.senders.a@b.test",
            '"@domain"',
        ),
        ("[submission]\nsendres = {}\n", "submission.sendres", "unknown key"),
        ('listen = "x"\n', "listen", "table"),
        ("[listen]\nsmtp = 25\n", "listen.smtp", "string"),
        ("[listen]\nsmtp = '127.0.0.1'\n", "listen.smtp", "host:port"),
        ("[listen]\nsmtp = ':25'\n", "listen.smtp", "host:port"),
        ("[listen]\nsmtp = 'localhost:65536'\n", "listen.smtp", "host:port"),
        ("[listen]\nimap = 'localhost:port'\n", "listen.imap", "host:port"),
        ("[listen]\nhttp = 'localhost:-1'\n", "listen.http", "host:port"),
        ("[overload]\nretry_budget_ratio = 1.0\n", "overload.retry_budget_ratio", "below 1"),
        ("[overload]\nmin_limit = 0\n", "overload.min_limit", "at least 1"),
        ("[overload]\ninitial_limit = 600\n", "overload.initial_limit", "max_limit"),
        ("[overload]\nlag_interval = 0\n", "overload.lag_interval", "at least"),
        (
            "[overload]\nbreaker_open_seconds = 60\nbreaker_max_open_seconds = 10\n",
            "overload.breaker_max_open_seconds",
            ">=",
        ),
        ("[status]\nwindow_seconds = 5\n", "status.window_seconds", "at least 10"),
        ("[status]\nevaluate_seconds = 0\n", "status.evaluate_seconds", "at least"),
        ("[status]\npublic_url = 'status.example'\n", "status.public_url", "http"),
        ("[status]\nwebhook_timeout = 0\n", "status.webhook_timeout", "at least"),
        ("[status]\nwebhook_max_subscriptions = 0\n", "status.webhook_max_subscriptions", "1"),
        ("[status]\nwebhook_max_per_network = 0\n", "status.webhook_max_per_network", "1"),
        ("[status]\nwebhook_subscribe_per_ip = 0\n", "status.webhook_subscribe_per_ip", "1"),
        (
            "[status]\nwebhook_subscribe_per_ip = 9\nwebhook_subscribe_per_network = 3\n",
            "status.webhook_subscribe_per_network",
            "webhook_subscribe_per_ip",
        ),
        ("[limits]\nhttp_body_timeout = 0.1\n", "limits.http_body_timeout", "at least"),
        ("[limits]\nhttp_min_body_rate = -1\n", "limits.http_min_body_rate", "negative"),
        ("[status.thresholds]\nqueue_depth = 5\n", "status.thresholds", "[degraded, down]"),
        ("[tls]\ncert = '/nonexistent/cert.pem'\n", "tls.key", "together"),
        ("[tls]\nkey = '/nonexistent/key.pem'\n", "tls.cert", "together"),
        (
            "[tls]\ncert = '/nonexistent/c.pem'\nkey = '/nonexistent/k.pem'\n",
            "tls.cert",
            "no such file",
        ),
    ],
)
def test_invalid_settings_name_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    error = error_for(tmp_path, text)
    assert error.key == key
    assert problem in error.problem
    assert str(error).startswith(f"{key}: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert raised.value.key == str(path)
    assert "no such file" in raised.value.problem


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path)
    assert raised.value.key == str(tmp_path)


@pytest.mark.parametrize(
    "text",
    ["hostname = \n", "[listen\n", 'hostname = "a"\nhostname = "b"\n', "= 1\n"],
)
def test_invalid_toml(tmp_path: Path, text: str) -> None:
    error = error_for(tmp_path, text)
    assert error.key.endswith("mailfort.toml")
    assert "not valid TOML" in error.problem
    assert "line" in error.problem


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    error = error_for(tmp_path, b'hostname = "caf\xe9"\n')
    assert "not valid TOML" in error.problem


def test_the_cli_stops_with_status_2_and_one_line(tmp_path: Path) -> None:
    bad = write(tmp_path, "[limits]\nmax_recipients = 'many'\n", "bad.toml")
    done = subprocess.run(
        [sys.executable, "-m", "mailfort", "--config", str(bad), "domain", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "limits.max_recipients" in lines[0]
    assert "integer" in lines[0]
    assert not (tmp_path / "var").exists()  # nothing was created


def test_client_networks_are_validated(tmp_path: Path) -> None:
    for text, key in (
        ("[limits]\nnetwork_prefix_v4 = 33\n", "limits.network_prefix_v4"),
        ("[limits]\nnetwork_prefix_v6 = 8\n", "limits.network_prefix_v6"),
        ("[limits]\nmax_network_share = 0\n", "limits.max_network_share"),
        ("[limits]\nmax_network_share = 1.5\n", "limits.max_network_share"),
        ("[limits]\ncpu_threads = 0\n", "limits.cpu_threads"),
        ("[limits]\ncpu_threads = 65\n", "limits.cpu_threads"),
    ):
        path = tmp_path / "mailfort.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load(path)
        assert caught.value.key == key, text


def test_message_memory_and_account_sessions_are_validated(tmp_path: Path) -> None:
    defaults = Config().limits
    assert defaults.max_message_bytes_in_memory >= defaults.max_message_size
    assert defaults.max_sessions_per_account == 50
    path = write(
        tmp_path,
        "[limits]\nmax_message_bytes_in_memory = 2097152\nmax_message_size = 1048576\n"
        "max_sessions_per_account = 3\n",
    )
    limits = load(path).limits
    assert (limits.max_message_bytes_in_memory, limits.max_sessions_per_account) == (2097152, 3)
    for text, key in (
        # The largest message must fit the budget, or it could never be stored.
        ("[limits]\nmax_message_bytes_in_memory = 1048576\n", "limits.max_message_bytes_in_memory"),
        ("[limits]\nmax_sessions_per_account = 0\n", "limits.max_sessions_per_account"),
    ):
        assert error_for(tmp_path, text).key == key, text


def test_login_limits_are_validated(tmp_path: Path) -> None:
    for text, key in (
        ("[limits]\nauth_failures_per_network = 0\n", "limits.auth_failures_per_network"),
        ("[limits]\nauth_failures_per_ip = 0\n", "limits.auth_failures_per_ip"),
        ("[limits]\nauth_failures_per_account = 0\n", "limits.auth_failures_per_account"),
        # A shorter memory would make every login a store write.
        ("[auth]\nknown_network_days = 0.5\n", "auth.known_network_days"),
        ("[auth]\nverify_concurrency = 0\n", "auth.verify_concurrency"),
        ("[auth]\nverify_max_waiting = 0\n", "auth.verify_max_waiting"),
    ):
        path = tmp_path / "mailfort.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load(path)
        assert caught.value.key == key, text
    defaults = Config()
    assert defaults.limits.auth_failures_per_network == 30
    assert defaults.auth.known_network_days == 30.0
    assert (defaults.auth.verify_concurrency, defaults.auth.verify_max_waiting) == (2, 64)
