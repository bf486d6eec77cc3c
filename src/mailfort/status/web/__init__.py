"""The status web: public page, Statuspage-style JSON, Atom feed, banner, phone announcement,
per-customer status and `/metrics`, served on the node's `http` listener.

Contract of this package (the web half of ``status/``):

- It only *reads* the status through :class:`~mailfort.status.repository.StatusRepository`
  (plus webhook subscriptions and the customer's own account for `/account`); it never computes
  component states itself.
- Public pages render from an in-memory snapshot (:mod:`.snapshot`) refreshed at most every few
  seconds, single-flight, so a visitor rush costs no store reads, and the last snapshot keeps being
  served while the store is down. Responses carry ``Cache-Control`` and a strong ``ETag`` so a CDN
  or proxy absorbs the rush (:mod:`.caching`).
- Every string a reader sees comes from the catalogs (``locales/<lang>/web.toml``), in the
  language chosen by ``?lang=`` or ``Accept-Language`` (:mod:`.text`).
- Links are built from ``[status] public_url`` or are relative, never from a request's ``Host``
  (public responses are cached by CDNs for everyone).
- Every request passes :class:`.guard.Guard`: its head and body are bounded (and the body read
  whole) before it may take a slot in the node's overload gate (:mod:`.head`, :mod:`.server`).
- It gets from its node only a :class:`.context.NodeParts` (settings, store, metrics, logins,
  client networks, a way to find the overload gate), from which :class:`.context.WebContext`
  is built; never the node itself.

May import: ``status/`` (its logic, repository, catalogs and webhook checks), the store's role
interfaces, ``auth/`` (the ``/account`` login), ``wellknown/`` (the mail client profile
``/account`` offers), ``config``, ``overload/``, the leaves (``metrics``,
``errors``, ``network``), starlette, uvicorn, jinja2, h11. Must not import: protocol cores,
``server/`` or ``node.py`` (``tests/unit/test_layers.py``).
"""

from mailfort.status.web.app import create_app
from mailfort.status.web.context import Gate, NodeParts, WebContext

__all__ = ["Gate", "NodeParts", "WebContext", "create_app"]
