"""`/announcement.wav`: the current announcement for the phone hotline, spoken by espeak-ng.

The text is the same as the page's (open incidents with their newest update, maintenance in
progress, or "all systems operational"), so the recorded message never lags behind the page.
Each distinct text is synthesised once (cached by its hash, single-flight); espeak-ng runs as a
subprocess with a timeout and bounded input. Without espeak-ng, or when it fails, the answer is
503 with Retry-After, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailfort.status.incidents import MaintenanceStatus
from mailfort.status.web import model
from mailfort.status.web.caching import Body, cached
from mailfort.status.web.context import WebContext, language
from mailfort.status.web.pages import cache_age
from mailfort.status.web.snapshot import View
from mailfort.status.web.text import Texts

log = logging.getLogger("mailfort.status.web")

MEDIA_TYPE = "audio/wav"
MAX_TEXT = 3000  # characters: about three minutes of speech, plenty for a hotline message
TIMEOUT = 30.0
_CACHED = 8  # distinct texts kept (each a WAV of up to a few MB)
_VOICES = {"en": "en", "de": "de"}


def text(t: Texts, view: View) -> str:
    page = view.page
    parts = [t("web.announcement_intro", provider=t.provider)]
    if page is None:
        parts.append(t("web.unknown_note"))
        return " ".join(parts)
    for incident in page.open_incidents:
        parts.append(f"{incident.title}. {t.latest(incident)}")
    for window in model.upcoming(page, view.now):
        if window.status(view.now) is MaintenanceStatus.IN_PROGRESS:
            parts.append(t("web.maintenance_now", title=window.title, end=t.time(window.ends_at)))
    if len(parts) == 1:
        return t("web.all_ok_announcement", provider=t.provider)
    spoken = " ".join(parts)
    return spoken if len(spoken) <= MAX_TEXT else spoken[: MAX_TEXT - 3] + "..."


class Unavailable(Exception):
    """No WAV can be made now (espeak-ng missing, failing or too slow)."""


class Synthesizer:
    """espeak-ng behind a small cache; concurrent requests for one text share one run."""

    def __init__(self, program: str = "espeak-ng", timeout: float = TIMEOUT) -> None:
        self.program = program
        self.timeout = timeout
        self._done: OrderedDict[str, Body] = OrderedDict()
        self._running: dict[str, asyncio.Task[Body]] = {}
        self.runs = 0

    async def wav(self, lang: str, spoken: str) -> Body:
        key = hashlib.sha256(f"{lang}\0{spoken}".encode()).hexdigest()
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        task = self._running.get(key)
        if task is None:
            task = self._running[key] = asyncio.create_task(self._speak(lang, spoken))
            task.add_done_callback(lambda _: self._running.pop(key, None))
        body = await asyncio.shield(task)
        self._done[key] = body
        if len(self._done) > _CACHED:
            self._done.popitem(last=False)
        return body

    async def _speak(self, lang: str, spoken: str) -> Body:
        program = shutil.which(self.program)
        if program is None:
            raise Unavailable(f"{self.program} is not installed (Debian package espeak-ng)")
        self.runs += 1
        with tempfile.TemporaryDirectory(prefix="mailfort-wav-") as folder:
            out = Path(folder) / "announcement.wav"
            # Text goes in on stdin, never as an argument: a text starting with "-" would be
            # read as an option.
            process = await asyncio.create_subprocess_exec(
                program, "-v", _VOICES.get(lang, "en"), "-w", str(out), "--stdin",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                _, err = await asyncio.wait_for(
                    process.communicate(spoken.encode("utf-8")), self.timeout
                )
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise Unavailable("espeak-ng took too long") from None
            data = out.read_bytes() if out.exists() else b""
        if process.returncode != 0 or not data.startswith(b"RIFF"):
            detail = err.decode("utf-8", "replace").strip()[:200]
            raise Unavailable(f"espeak-ng failed (exit {process.returncode}): {detail}")
        return Body.of(data, MEDIA_TYPE)


def routes(ctx: WebContext) -> list[Route]:
    synthesizer = Synthesizer(ctx.espeak)

    async def announcement(request: Request) -> Response:
        view = await ctx.snapshots.view()
        lang = language(request)
        t = Texts(lang, ctx.provider)
        spoken = view.rendered(("announcement", lang), lambda: text(t, view))
        try:
            body = await synthesizer.wav(lang, spoken)
        except Unavailable as exc:
            log.warning("event=announcement_unavailable error=%s", exc)
            return Response(
                "announcement unavailable, try again later\n",
                503,
                headers={"Retry-After": "60", "Cache-Control": "no-store"},
                media_type="text/plain; charset=utf-8",
            )
        return cached(request, body, lang=lang, max_age=cache_age(view))

    return [Route("/announcement.wav", announcement, methods=["GET"])]
