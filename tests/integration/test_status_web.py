"""The status web on a real node's `http` listener, over real HTTP on loopback: the page in two
languages, the Statuspage-shaped JSON, the Atom feed, the banner, the spoken announcement,
per-customer status, webhook subscriptions and `/metrics`. Status records are seeded through the
real StatusRepository on the node's own store, and the node picks them up within its snapshot
refresh."""

from __future__ import annotations

import asyncio
import base64
import shutil
import smtplib
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mailfort.auth.throttle import ThrottleLimits
from mailfort.config import Config, OverloadConfig, StatusConfig
from mailfort.metrics import NodeMetrics
from mailfort.server.overload import OverloadGate
from mailfort.status.components import Component, ComponentState, StateChange
from mailfort.status.incidents import Author, Incident, IncidentStatus, Origin, TimelineEntry
from mailfort.status.repository import StatusRepository
from mailfort.status.signals import Finding, Protocol, Severity
from mailfort.status.web import WebContext, create_app
from mailfort.status.web.server import HttpListener
from mailfort.status.web.snapshot import SnapshotCache
from mailfort.status.webhook_client import WebhookClient
from mailfort.store.sqlite import SqliteStore
from tests.auth_support import logins
from tests.integration.status_web_support import json_of, start_web_node, wait_for, with_repository
from tests.nodeproc import NodeProcess
from tests.rawclient import client_tls
from tests.webhook_receiver import Receiver

PASSWORD = "correct horse battery staple"
USER = "alice@example.test"
TITLE = "Delayed mail <script>alert(1)</script>"
FIRST = "We are investigating delays for incoming mail."
SECOND = "A storage server failed; queued mail will be delivered."
MAINTENANCE = "Hardware upgrade"
ATOM = "{http://www.w3.org/2005/Atom}"


@dataclass
class Site:
    node: NodeProcess
    base: str
    client: httpx.Client
    incident_id: str
    maintenance_starts: float


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    node, base = start_web_node(tmp_path_factory.mktemp("web"), {USER: PASSWORD})
    now = time.time()
    # Maintenance tomorrow at 02:00-04:00 UTC, so the window reads the same in any test run.
    starts = (now // 86400 + 1) * 86400 + 2 * 3600

    async def seed(repository: StatusRepository) -> str:
        incident = await repository.open_incident(
            now, TITLE, FIRST, {Component.INCOMING: ComponentState.DEGRADED}
        )
        await repository.update_incident(now + 1, incident.id, SECOND, IncidentStatus.IDENTIFIED)
        await repository.add_maintenance(
            MAINTENANCE, "Storage servers get new disks.", starts, starts + 7200, (Component.IMAP,)
        )
        return incident.id

    incident_id = with_repository(node, seed)
    # trust_env=False: never let a proxy from the environment take loopback traffic elsewhere.
    client = httpx.Client(base_url=base, timeout=15, trust_env=False)
    try:
        wait_for(lambda: client.get("/"), lambda r: SECOND in r.text, what="seeded incident")
        yield Site(node, base, client, incident_id, starts)
    finally:
        client.close()
        node.stop()


def test_page_shows_incident_timeline_and_maintenance_in_english(site: Site) -> None:
    r = site.client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["vary"] == "Accept-Language"
    assert r.headers["content-language"] == "en"
    assert "default-src 'none'" in r.headers["content-security-policy"], "no script may run"
    page = r.text
    assert '<html lang="en">' in page
    assert "Example Mail service status" in page
    # Operator text is escaped, never markup.
    assert "<script>alert(1)</script>" not in page
    assert "Delayed mail &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Current incidents" in page
    assert page.index(SECOND) < page.index(FIRST), "timeline must be newest first"
    # The operator said Incoming mail is degraded: the page must not call it operational.
    assert "Some services are slow" in page
    assert MAINTENANCE in page
    assert "02:00 UTC to 04:00 UTC" in page
    assert page.count('class="day') >= 5 * 90, "90 days of history per component"
    assert "Identified" in page
    assert "<script" not in page.replace("<script>alert", ""), "the page needs no JavaScript"


def test_page_speaks_german_by_accept_language_and_query(site: Site) -> None:
    r = site.client.get("/", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    assert r.status_code == 200
    assert r.headers["content-language"] == "de"
    assert '<html lang="de">' in r.text
    assert "Aktuelle Störungen" in r.text
    assert "Geplante Wartungsarbeiten" in r.text
    assert "Ursache gefunden" in r.text  # the incident status "identified"
    forced = site.client.get("/?lang=de", headers={"Accept-Language": "en"})
    assert "Aktuelle Störungen" in forced.text
    english = site.client.get("/", headers={"Accept-Language": "fr, en;q=0.5"})
    assert "Current incidents" in english.text
    assert english.headers["etag"] != r.headers["etag"]


def test_incident_page_and_unknown_id(site: Site) -> None:
    r = site.client.get(f"/incidents/{site.incident_id}?lang=de")
    assert r.status_code == 200
    assert FIRST in r.text and SECOND in r.text
    assert "Zurück zur Statusseite" in r.text
    missing = site.client.get("/incidents/inc-999999")
    assert missing.status_code == 404
    assert "There is no incident with this id." in missing.text


def test_summary_json_is_shaped_like_statuspage(site: Site) -> None:
    summary = json_of(site.client.get("/api/v2/summary.json"))
    assert set(summary) == {"page", "status", "components", "incidents", "scheduled_maintenances"}
    assert set(summary["page"]) == {"id", "name", "url", "time_zone", "updated_at"}
    assert summary["page"]["name"] == "Example Mail"
    assert summary["page"]["updated_at"].endswith("Z")
    assert summary["status"] == {"indicator": "minor", "description": "Minor Service Outage"}
    components = {c["id"]: c for c in summary["components"]}
    assert components["incoming"]["status"] == "degraded_performance"
    assert components["outgoing"]["status"] == "operational"
    for key in (
        "id", "name", "status", "created_at", "updated_at", "position", "description",
        "showcase", "group_id", "only_show_if_degraded", "group",
    ):  # fmt: skip
        assert key in components["incoming"], key
    (incident,) = summary["incidents"]
    assert incident["id"] == site.incident_id
    assert incident["name"] == TITLE
    assert incident["status"] == "identified"
    assert incident["impact"] == "minor"
    assert incident["resolved_at"] is None
    assert incident["shortlink"].endswith(f"/incidents/{site.incident_id}")
    bodies = [u["body"] for u in incident["incident_updates"]]
    assert bodies == [SECOND, FIRST]
    for key in ("id", "status", "body", "incident_id", "created_at", "display_at"):
        assert key in incident["incident_updates"][0]
    assert [c["id"] for c in incident["components"]] == ["incoming"]
    (window,) = summary["scheduled_maintenances"]
    assert window["name"] == MAINTENANCE
    assert window["status"] == "scheduled"
    assert window["scheduled_for"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(site.maintenance_starts)
    )
    for path, key in (
        ("status", "status"),
        ("components", "components"),
        ("incidents", "incidents"),
        ("incidents/unresolved", "incidents"),
        ("scheduled-maintenances/upcoming", "scheduled_maintenances"),
    ):
        document = json_of(site.client.get(f"/api/v2/{path}.json"))
        assert key in document and "page" in document, path
    upcoming = json_of(site.client.get("/api/v2/scheduled-maintenances/upcoming.json"))
    assert [m["name"] for m in upcoming["scheduled_maintenances"]] == [MAINTENANCE]


def test_atom_feed_parses_and_holds_the_incident(site: Site) -> None:
    r = site.client.get("/history.atom")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(r.content)
    assert feed.tag == f"{ATOM}feed"
    for tag in ("id", "title", "updated", "author"):
        assert feed.find(f"{ATOM}{tag}") is not None, tag
    self_link = [x for x in feed.findall(f"{ATOM}link") if x.get("rel") == "self"]
    # No [status] public_url: links are relative (RFC 4287 resolves them against the feed's
    # own address), never built from the request's Host; ids must be absolute (atom:id).
    assert self_link and self_link[0].get("href", "").startswith("/history.atom")
    assert (feed.findtext(f"{ATOM}id") or "").startswith("http://")
    entries = feed.findall(f"{ATOM}entry")
    contents = [e.findtext(f"{ATOM}content") for e in entries]
    assert FIRST in contents and SECOND in contents
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(ids) == len(set(ids)), "entry ids must be unique"
    titles = [e.findtext(f"{ATOM}title") or "" for e in entries]
    assert any(MAINTENANCE in t for t in titles)
    german = ET.fromstring(site.client.get("/history.atom?lang=de").content)
    assert german.get("{http://www.w3.org/XML/1998/namespace}lang") == "de"
    assert any("Ursache gefunden" in (e.findtext(f"{ATOM}title") or "") for e in german)


def test_etag_and_cache_control_give_304(site: Site) -> None:
    for path in ("/", "/api/v2/summary.json", "/history.atom", "/banner.json"):
        r = site.client.get(path)
        etag = r.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/"), "a strong validator"
        control = r.headers["cache-control"]
        assert "public" in control and "max-age=" in control
        assert "stale-while-revalidate" in control and "stale-if-error" in control
        again = site.client.get(path, headers={"If-None-Match": etag})
        if again.headers.get("etag") != etag:  # the snapshot moved on in between; once more
            etag = again.headers["etag"]
            again = site.client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304, path
        assert again.content == b""
        assert again.headers["etag"] == etag
        other = site.client.get(path, headers={"If-None-Match": '"not-it"'})
        assert other.status_code == 200 and other.content


def test_banner_json_html_and_script_while_incident_open(site: Site) -> None:
    r = site.client.get("/banner.json", headers={"Origin": "https://www.example.test"})
    assert r.headers["access-control-allow-origin"] == "*"
    banner = json_of(r)
    assert banner["active"] is True
    assert banner["level"] == "minor"
    assert TITLE in banner["title"]
    assert banner["text"] == SECOND
    assert banner["url"].endswith(f"/incidents/{site.incident_id}")
    preflight = site.client.options(
        "/banner.json",
        headers={"Origin": "https://www.example.test", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "GET" in preflight.headers["access-control-allow-methods"]
    html = site.client.get("/banner.html")
    assert 'role="alert"' in html.text and "&lt;script&gt;" in html.text
    script = site.client.get("/banner.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "banner.json" in script.text and "textContent" in script.text


def test_announcement_wav_is_spoken_once_per_text(site: Site) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip(
            "espeak-ng is not installed (Debian package espeak-ng; `make test` installs it)"
        )
    r = site.client.get("/announcement.wav")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    assert r.content[:4] == b"RIFF" and r.content[8:12] == b"WAVE"
    assert len(r.content) > 20_000, "a spoken incident takes seconds of audio"
    again = site.client.get("/announcement.wav", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    german = site.client.get("/announcement.wav?lang=de")
    assert german.status_code == 200 and german.content[:4] == b"RIFF"
    assert german.content != r.content


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_account_status_needs_the_right_password(site: Site) -> None:
    anonymous = site.client.get("/api/account.json")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic realm=")
    wrong = site.client.get("/api/account.json", headers=_basic(USER, "wrong"))
    assert wrong.status_code == 401
    assert "alice" not in wrong.text
    # Alice sends to a remote domain; the test node's DNS never answers, so it stays queued.
    with smtplib.SMTP("127.0.0.1", site.node.ports["submission"], timeout=30) as smtp:
        smtp.starttls(context=client_tls())
        smtp.login(USER, PASSWORD)
        message = f"From: {USER}\r\nSubject: hi\r\n\r\nhello\r\n"
        smtp.sendmail(USER, ["someone@remote.test"], message)
    r = site.client.get("/api/account.json", headers=_basic(USER.upper(), PASSWORD))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "private, no-store"
    account = json_of(r)
    assert account["address"] == USER
    assert account["queued_from"] == 1 and account["queued_for"] == 0
    assert account["oldest_queued_at"].endswith("Z")
    assert 0 <= account["oldest_queued_age_seconds"] < 120
    assert account["delayed"] is False
    assert isinstance(account["incidents"], list)
    page = site.client.get("/account?lang=de", headers=_basic(USER, PASSWORD))
    assert page.status_code == 200
    assert "Status von alice@example.test" in page.text
    assert "<td>1</td>" in page.text
    assert page.headers["cache-control"] == "private, no-store"
    metrics = site.client.get("/metrics").text
    assert 'mailfort_logins_total{protocol="http",result="rejected"}' in metrics
    assert 'mailfort_logins_total{protocol="http",result="success"}' in metrics


def test_metrics_exposes_the_node_registry(site: Site) -> None:
    r = site.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    for name in (
        "mailfort_logins_total",
        "mailfort_store_commit_duration_seconds_bucket",
        "mailfort_component_status",
    ):
        assert name in r.text, name


def test_webhook_subscribe_verify_and_unsubscribe(site: Site) -> None:
    # The site's node has [status] webhook_allow_private = true: its subscribers are on loopback.
    with Receiver() as willing, Receiver(echo=False) as unwilling:
        r = site.client.post(
            "/api/v2/webhooks", json={"url": willing.url, "components": ["imap", "pop3"]}
        )
        assert r.status_code == 201, r.text
        hook = r.json()
        assert hook["url"] == willing.url and hook["components"] == ["imap", "pop3"]
        assert r.headers["location"] == f"/api/v2/webhooks/{hook['id']}"
        (challenge,) = willing.challenges  # asked before it was stored
        assert challenge["hub.mode"] == "subscribe"
        stored = with_repository(site.node, lambda repo: repo.webhooks())
        assert [(w.id, w.url) for w in stored] == [(hook["id"], hook["url"])]
        # Twice is like once: the same subscription (after proving control of the URL again).
        again = site.client.post("/api/v2/webhooks", data={"url": willing.url})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == hook["id"] and len(willing.challenges) == 2
        # A URL that does not echo the challenge is not stored and gets nothing else.
        refused = site.client.post("/api/v2/webhooks", json={"url": unwilling.url})
        assert refused.status_code == 400 and "challenge" in refused.json()["error"]
        assert unwilling.bodies == [] and len(unwilling.challenges) == 1
        for bad in (
            {"url": "ftp://hooks.example.test/"},
            {"url": "https://user:secret@hooks.example.test/"},
            {"url": willing.url, "components": ["nonsense"]},
            {},
        ):
            refused = site.client.post("/api/v2/webhooks", json=bad)
            assert refused.status_code == 400, (bad, refused.text)
        huge = site.client.post(
            "/api/v2/webhooks", json={"url": "https://hooks.example.test/" + "x" * 20_000}
        )
        assert huge.status_code == 413
        assert site.client.delete(f"/api/v2/webhooks/{hook['id']}").status_code == 204
        assert site.client.delete(f"/api/v2/webhooks/{hook['id']}").status_code == 404
        assert with_repository(site.node, lambda repo: repo.webhooks()) == []


def test_banner_goes_quiet_after_resolve(site: Site) -> None:
    # Last in this module: it resolves the seeded incident.
    async def resolve(repository: StatusRepository) -> None:
        await repository.update_incident(
            time.time(), site.incident_id, "Everything is delivered.", IncidentStatus.RESOLVED
        )

    with_repository(site.node, resolve)
    banner = wait_for(
        lambda: site.client.get("/banner.json"),
        lambda r: r.json()["active"] is False,
        what="inactive banner",
    )
    assert banner.headers["access-control-allow-origin"] == "*"
    html = site.client.get("/banner.html")
    assert html.status_code == 200 and html.content == b""
    page = site.client.get("/").text
    assert "All systems operational" in page
    assert "Past incidents" in page and "Delayed mail &lt;script&gt;" in page


# ---- in-process: the node's web app on a real store that goes away ---------------------------


class Clock:
    """The snapshot's clock, moved by the test: refreshes happen when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def _serve(
    store: SqliteStore,
    config: Config,
    gate: OverloadGate | None = None,
    clock: Clock | None = None,
    head_timeout: float = 10.0,
) -> tuple[HttpListener, WebContext]:
    repository = StatusRepository(store)
    snapshots = SnapshotCache(
        lambda now: repository.page(now), refresh=5.0, timeout=2.0, clock=clock or time.time
    )
    ctx = WebContext(
        config=config,
        store=store,
        repository=repository,
        metrics=NodeMetrics(),
        auth=logins(store, ThrottleLimits(per_address=10, per_account=10, base_delay=0.1)),
        snapshots=snapshots,
        gate=lambda: gate,
        webhook_client=WebhookClient(timeout=2.0, allow_private=True),
    )
    listener = HttpListener(create_app(ctx), "127.0.0.1", 0, head_timeout=head_timeout)
    await listener.start()
    return listener, ctx


async def test_a_rush_costs_one_store_read_and_the_page_outlives_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "mailfort.sqlite3")
    await store.open()
    await StatusRepository(store).open_incident(
        time.time(),
        "Store trouble ahead",
        "Watch this space.",
        {Component.IMAP: ComponentState.PARTIAL_OUTAGE},
    )
    clock = Clock()
    config = Config(status=StatusConfig(provider_name="Example Mail"))
    listener, ctx = await _serve(store, config, clock=clock)
    base = f"http://127.0.0.1:{listener.port}"
    try:
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=10) as client:
            first = await client.get("/")
            assert "Watch this space." in first.text
            assert ctx.snapshots.reads == 1
            # Long past the refresh interval, a hundred visitors at once: every one of them
            # needs the new snapshot, and they share one store read.
            clock.now += 60
            rush = await asyncio.gather(*(client.get("/") for _ in range(100)))
            assert all(r.status_code == 200 for r in rush)
            assert ctx.snapshots.reads == 2
            await store.close()  # the store is gone: the mail path is down
            clock.now += 60
            r = await client.get("/")
            assert ctx.snapshots.reads == 3
            assert r.status_code == 200
            assert "could not be refreshed" in r.text
            assert "Watch this space." in r.text, "the last snapshot keeps being served"
            assert "max-age=5," in r.headers["cache-control"]
            summary = (await client.get("/api/v2/summary.json")).json()
            assert summary["status"]["indicator"] == "major"
            assert summary["incidents"][0]["name"] == "Store trouble ahead"
    finally:
        await listener.stop()


async def test_without_any_snapshot_components_are_unknown(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "never-opened.sqlite3")  # never opened: every read fails
    listener, _ = await _serve(store, Config())
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{listener.port}", trust_env=False, timeout=10
        ) as client:
            r = await client.get("/")
            assert r.status_code == 200
            assert "Status unknown" in r.text
            assert "could not be read" in r.text
            assert r.text.count("Unknown") == 5
            summary = (await client.get("/api/v2/summary.json")).json()
            assert summary["status"]["indicator"] == "unknown"
            assert {c["status"] for c in summary["components"]} == {"unknown"}
            banner = (await client.get("/banner.json")).json()
            assert banner["active"] is False
            # Passwords over plain HTTP: refused unless a TLS proxy on this host says https
            # ([auth] allow_plaintext_loopback is off in this config).
            plain = await client.get("/api/account.json", headers=_basic(USER, PASSWORD))
            assert plain.status_code == 403
            assert "HTTPS" in plain.text
            proxied = await client.get(
                "/api/account.json",
                headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
            )
            assert proxied.status_code == 401, "behind the TLS proxy it asks for credentials"
    finally:
        await listener.stop()


async def test_overload_gate_refuses_store_work_but_serves_pages_from_memory(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "mailfort.sqlite3")
    await store.open()
    config = Config(
        overload=OverloadConfig(initial_limit=1, min_limit=1, max_limit=1, retry_after=7)
    )
    gate = OverloadGate(config.overload, NodeMetrics())
    listener, _ = await _serve(store, config, gate)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{listener.port}", trust_env=False, timeout=10
        ) as client:
            assert (await client.get("/api/v2/status.json")).status_code == 200
            held = gate.try_acquire("test")  # the node's only slot is taken
            assert held is not None
            # Store-bound requests wait for a slot: a subscription (for its store write, after
            # the subscriber answered), an incident too old for the snapshot.
            with Receiver() as hooks:
                refused = await client.post("/api/v2/webhooks", json={"url": hooks.url})
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "7"
                assert len(hooks.challenges) == 1
            refused = await client.get("/incidents/inc-old")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "7"
            # Pages from memory do not: customers read them while mail is overloaded.
            for path in ("/", "/api/v2/status.json", "/banner.json", "/history.atom"):
                assert (await client.get(path)).status_code == 200, path
            # ... unless the CPU itself is saturated.
            gate.loop_lag = config.overload.max_loop_lag
            refused = await client.get("/api/v2/status.json")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "7"
            assert (await client.get("/metrics")).status_code == 200
            gate.loop_lag = 0.0
            gate.release(held)
            assert (await client.get("/api/v2/status.json")).status_code == 200
            assert (await client.get("/incidents/inc-old")).status_code == 404
    finally:
        await listener.stop()
        await store.close()


async def test_automatic_entries_are_told_in_the_readers_language(tmp_path: Path) -> None:
    # The leader's entries carry a StateChange with findings and no text; the web words them.
    store = SqliteStore(tmp_path / "mailfort.sqlite3")
    await store.open()
    repository = StatusRepository(store)
    now = time.time()
    findings = (
        Finding("store_commit_p95", 3.2, 2.0, Severity.DOWN),
        Finding("login_success_rate", 0.42, 0.5, Severity.DOWN, Protocol.IMAP),
    )
    change = StateChange(
        Component.IMAP, ComponentState.OPERATIONAL, ComponentState.PARTIAL_OUTAGE, now, findings
    )
    incident = Incident(
        id=await repository.new_id("inc-"),
        origin=Origin.AUTOMATIC,
        title="IMAP: partial outage",
        status=IncidentStatus.INVESTIGATING,
        opened_at=now,
        components={Component.IMAP: ComponentState.PARTIAL_OUTAGE},
        timeline=(
            TimelineEntry(now, IncidentStatus.INVESTIGATING, Author.AUTOMATIC, change=change),
        ),
    )
    await repository.save_incident(incident)
    listener, _ = await _serve(store, Config())
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{listener.port}", trust_env=False, timeout=10
        ) as client:
            english = (await client.get("/")).text
            assert (
                "IMAP: Partial outage (before: Operational). Cause: saving mail takes 3.2 s"
                " (limit 2 s); only 42 % of IMAP logins succeed (limit 50 %)." in english
            )
            german = (await client.get("/", headers={"Accept-Language": "de"})).text
            assert (
                "IMAP: Teilweiser Ausfall (vorher: In Betrieb). Ursache: das Speichern von"
                " E-Mails dauert 3,2 s (Grenze 2 s); nur 42 % der IMAP-Anmeldungen gelingen"
                " (Grenze 50 %)." in german
            )
            summary = (await client.get("/api/v2/summary.json")).json()
            (update,) = summary["incidents"][0]["incident_updates"]
            assert update["affected_components"] == [
                {
                    "code": "imap",
                    "name": "IMAP",
                    "old_status": "operational",
                    "new_status": "partial_outage",
                }
            ]
            assert update["body"].startswith("IMAP: Partial outage")
            assert summary["status"]["indicator"] == "major"
    finally:
        await listener.stop()
        await store.close()


async def test_a_request_head_must_arrive_in_time_or_the_connection_goes(tmp_path: Path) -> None:
    """uvicorn alone keeps a silent or trickling client for ever; enough of them (slowloris)
    would make the status page answer 503 to every visitor."""
    store = SqliteStore(tmp_path / "mailfort.sqlite3")
    await store.open()
    listener, _ = await _serve(store, Config(), head_timeout=1.0)
    port = listener.port

    async def read_all(reader: asyncio.StreamReader) -> bytes:
        return await asyncio.wait_for(reader.read(), 5.0)  # until the node closes

    try:
        # Silent: closed without a word.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        assert await read_all(reader) == b""
        assert 0.9 <= time.monotonic() - started < 4.0
        writer.close()
        # A head trickled past the deadline: 408, then closed.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for piece in (b"GET / HTTP/1.1\r\n", b"Host: status.test\r\n", b"X-Slow: 1\r\n"):
            writer.write(piece)
            await asyncio.sleep(0.4)
        answer = await read_all(reader)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        writer.close()
        # A keep-alive client whose second head trickles: the deadline runs again from its
        # first byte, the first answer still came whole.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/v2/status.json HTTP/1.1\r\nHost: status.test\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        await asyncio.sleep(0.8)  # idle between requests: within keep-alive, not the head's time
        writer.write(b"GET / HTTP/1.1\r\n")
        answer = await read_all(reader)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        writer.close()
        # An ordinary client is unaffected.
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10
        ) as client:
            assert (await client.get("/api/v2/status.json")).status_code == 200
            await asyncio.sleep(1.5)  # longer than the head timeout, idle on keep-alive
            assert (await client.get("/")).status_code == 200
    finally:
        await listener.stop()
        await store.close()
