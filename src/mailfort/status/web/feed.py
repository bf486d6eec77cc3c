"""`/history.atom`: an Atom feed (RFC 4287) with one entry per incident update and per maintenance
window, in the reader's language. Built with ElementTree so it is always well-formed XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailfort.status.web import model
from mailfort.status.web.caching import Body, cached
from mailfort.status.web.context import WebContext, language
from mailfort.status.web.pages import cache_age
from mailfort.status.web.snapshot import View
from mailfort.status.web.text import Texts, iso

ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml; charset=utf-8"
# XML 1.0 forbids most control characters; operator text could contain them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
    if text is not None:
        element.text = _clean(text)
    return element


def build(t: Texts, view: View, base: str, ids: str | None = None) -> bytes:
    """The feed with links under `base` (may be relative: RFC 4287 §2 resolves them against
    the feed's own URL) and ids under `ids` (absolute, as atom:id must be; default `base`)."""
    ids = base if ids is None else ids
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": t.lang})
    _add(feed, "id", f"{ids}history.atom")
    _add(feed, "title", t("web.title", provider=t.provider))
    _add(feed, "link", rel="self", href=f"{base}history.atom?lang={t.lang}")
    _add(feed, "link", rel="alternate", type="text/html", href=f"{base}?lang={t.lang}")
    author = _add(feed, "author")
    _add(author, "name", t.provider)
    entries: list[tuple[float, ET.Element]] = []
    page = view.page
    incidents = [*page.open_incidents, *page.recent_incidents] if page else []
    for incident in incidents:
        link = f"{base}incidents/{incident.id}"
        for index, update in enumerate(incident.timeline, start=1):
            entry = ET.Element(f"{{{ATOM}}}entry")
            status = t(f"web.incident_status.{update.status}")
            _add(entry, "id", f"{ids}incidents/{incident.id}#update-{index}")
            _add(entry, "title", f"{incident.title} – {status}")
            _add(entry, "updated", iso(update.at))
            _add(entry, "published", iso(update.at))
            _add(entry, "link", rel="alternate", type="text/html", href=link)
            _add(entry, "content", t.entry(update), type="text")
            entries.append((update.at, entry))
    for window in model.upcoming(page, view.now):
        entry = ET.Element(f"{{{ATOM}}}entry")
        changed = window.updates[-1].at if window.updates else window.starts_at
        status = t(f"web.maintenance_status.{window.status(view.now)}")
        _add(entry, "id", f"{ids}#{window.id}")
        _add(entry, "title", f"{t('web.maintenance')}: {window.title} – {status}")
        _add(entry, "updated", iso(changed))
        _add(entry, "link", rel="alternate", type="text/html", href=f"{base}#{window.id}")
        text = f"{t.window(window.starts_at, window.ends_at)}. {window.text}"
        if window.updates:
            text += " " + t.entry(window.updates[-1])
        _add(entry, "content", text, type="text")
        entries.append((changed, entry))
    entries.sort(key=lambda e: e[0], reverse=True)
    newest = entries[0][0] if entries else (view.fetched_at or view.now)
    # The feed's own `updated` must follow its entries, not the refresh clock, or every
    # snapshot would change the body (and the ETag) although nothing happened.
    _add(feed, "updated", iso(newest))
    for _, entry in entries:
        feed.append(entry)
    data: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return data


def routes(ctx: WebContext) -> list[Route]:
    async def history(request: Request) -> Response:
        view = await ctx.snapshots.view()
        lang = language(request)
        base = ctx.base_url(request)

        def render() -> Body:
            texts = Texts(lang, ctx.provider)
            return Body.of(build(texts, view, base, ctx.id_base), MEDIA_TYPE)

        body = view.rendered(("atom", lang, base), render)
        return cached(request, body, lang=lang, max_age=cache_age(view))

    return [Route("/history.atom", history, methods=["GET"])]
