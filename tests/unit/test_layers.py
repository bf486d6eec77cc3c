"""The layer table of DESIGN.md ("Layers and seams"), enforced on every module's imports.

`LAYERS` is the table: each layer, the modules it holds, and the layers it may import (the
wiring may import all). Beside it: the store engines and the database drivers that stay inside
`store/`, the pure modules that reach no I/O, and the single edges the table allows with their
reasons. tests/import_layers.py holds the checker and its rules; every import counts, inside
functions and under `TYPE_CHECKING` too. A failure names the module, the import and the rule.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.import_layers import (
    Import,
    Layer,
    Rules,
    check,
    check_layers,
    imports,
    read_sources,
)

SRC = Path(__file__).resolve().parents[2] / "src"

LEAVES = "leaves"
WIRING = "wiring"

LAYERS: tuple[Layer, ...] = (
    Layer(
        LEAVES,
        ("mailfort.errors", "mailfort.metrics", "mailfort.logs", "mailfort.network"),
    ),
    Layer("protocol", ("mailfort.protocol",), (LEAVES, "mail")),
    Layer("mail", ("mailfort.mail",), (LEAVES, "store")),
    Layer("store", ("mailfort.store",), (LEAVES,)),
    Layer("overload", ("mailfort.overload",)),
    Layer("auth", ("mailfort.auth",), (LEAVES, "store", "mail")),  # mail: addresses
    # Settings parse into the domain's types: addresses, and [transport]'s next hops.
    Layer("config", ("mailfort.config",), (LEAVES, "mail", "delivery")),
    Layer("trust", ("mailfort.trust",), (LEAVES, "mail", "store")),
    Layer("certs", ("mailfort.certs",), (LEAVES, "config", "store")),
    Layer("delivery", ("mailfort.delivery",), (LEAVES, "protocol", "mail", "store", "trust")),
    Layer("queue", ("mailfort.queue",), (LEAVES, "store", "mail", "delivery", "overload", "trust")),
    Layer(
        "wellknown", ("mailfort.wellknown",), (LEAVES, "config", "mail", "store", "trust", "certs")
    ),
    Layer(
        "ops",
        ("mailfort.ops",),
        # wellknown: the MTA-STS policy id as the http listener serves it
        (LEAVES, "config", "mail", "store", "trust", "certs", "delivery", "protocol", "wellknown"),
    ),
    Layer("cluster", ("mailfort.cluster",), (LEAVES, "store")),
    # The planner runs on a laptop with no store; it drives a node from outside, as a client.
    Layer("capacity", ("mailfort.capacity",), (LEAVES,)),
    # cluster: which nodes count as live; config: the [status] settings; capacity: the live
    # margin prices the heartbeats' work with the planner's own costs and closed form.
    Layer(
        "status",
        ("mailfort.status",),
        (LEAVES, "store", "cluster", "config", "overload", "capacity"),
    ),
    # wellknown: `/account` offers the customer's mail client profile, built there.
    Layer(
        "status/web",
        ("mailfort.status.web",),
        (LEAVES, "status", "store", "auth", "config", "overload", "wellknown"),
    ),
    # status: the components a session reports on and the notices it shows (never status/web).
    Layer(
        "server",
        ("mailfort.server",),
        (
            LEAVES,
            "protocol",
            "mail",
            "store",
            "overload",
            "auth",
            "config",
            "status",
            "trust",
            "certs",
        ),
    ),
    Layer(WIRING, ("mailfort.node", "mailfort.cli*", "mailfort.__main__")),
)
# Flat files (`store/sqlite_queue.py`) or subpackages (`store/sqlite/queue.py`) alike.
ENGINES = ("mailfort.store.sqlite*", "mailfort.store.postgres*")
DRIVERS = ("sqlite3", "asyncpg", "psycopg", "psycopg2")

# Pure logic: no event loop, sockets, TLS, threads, clock or store, reached through any chain
# of imports (callers pass in the time and the results of I/O).
IO = ("asyncio", "socket", "ssl", "selectors", "threading", "time", *DRIVERS)
PURE: Mapping[str, tuple[str, ...]] = {
    # sans-IO protocol cores (STYLE.md 1); tests/unit/test_sans_io.py checks the same at run time.
    "mailfort.protocol": (*IO, "mailfort.store", "mailfort.server"),
    # overload defences: decisions only, the caller passes `now` and randomness.
    "mailfort.overload": (*IO, "logging", "mailfort.store", "mailfort.config"),
    # status logic: signals → component states → incidents, and their stored form.
    "mailfort.status.signals": (*IO, "mailfort.store"),
    "mailfort.status.components": (*IO, "mailfort.store"),
    "mailfort.status.incidents": (*IO, "mailfort.store"),
    "mailfort.status.records": (*IO, "mailfort.store"),
    "mailfort.status.i18n": (*IO, "mailfort.store"),
}

# Imports the table allows one module at a time, each with the reason it is not a layer rule.
# A named edge, not a layer: an exception that is no longer used fails the test.
EXCEPTIONS: Mapping[tuple[str, str], str] = {}

RULES = Rules(
    layers=LAYERS,
    leaves=LEAVES,
    wiring=WIRING,
    store="store",
    engines=ENGINES,
    drivers=DRIVERS,
    pure=PURE,
    exceptions=EXCEPTIONS,
)


# --- the real tree ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    found = read_sources(SRC)
    assert "mailfort.protocol.smtp.replies" in found  # the walk found the tree
    return found


def test_the_tree_keeps_the_layer_table(sources: dict[str, str]) -> None:
    violations = check(sources, RULES)
    assert not violations, "the layer table is broken:\n" + "\n".join(map(str, violations))


def test_every_exception_is_still_needed(sources: dict[str, str]) -> None:
    edges = {(edge.module, edge.target) for edge in imports(sources)}
    unused = [pair for pair in EXCEPTIONS if pair not in edges]
    assert not unused, f"exceptions no longer used, remove them from EXCEPTIONS: {unused}"
    strict = dataclasses.replace(RULES, exceptions={})
    still = [pair for pair in EXCEPTIONS if not check_layers(_edges(*pair), [], strict)]
    assert not still, f"exceptions the layer table allows anyway: {still}"


def _packages() -> list[Path]:
    """Every folder of `src/mailfort` that holds Python modules (data folders hold none)."""
    return sorted({path.parent for path in (SRC / "mailfort").rglob("*.py")})


@pytest.mark.parametrize(
    "folder",
    [pytest.param(folder, id=str(folder.relative_to(SRC))) for folder in _packages()],
)
def test_every_package_opens_with_its_contract(folder: Path) -> None:
    """STYLE.md 8: a package's `__init__.py` opens with what it holds and what it may import."""
    init = folder / "__init__.py"
    assert init.exists(), f"{folder.relative_to(SRC)} has no __init__.py to state its contract"
    if folder.name == "migrations":  # SQL files as package data, no code
        return
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
    assert re.search(r"(may|must not) import", doc, re.IGNORECASE), (
        f'{init.relative_to(SRC)} states no import rule ("may import" / "must not import")'
    )


# --- the checker itself, on synthetic module sets ----------------------------------------------


def _edges(module: str, target: str) -> list[Import]:
    return [Import(module, target, 1, "")]


def _tree(**modules: str) -> dict[str, str]:
    """A synthetic package: `a__b="..."` is module `mailfort.a.b`; every package gets an
    `__init__` so that resolution sees it as one."""
    sources = {"mailfort": '"""root"""'}
    for name, text in modules.items():
        parts = ["mailfort", *name.split("__")]
        for n in range(2, len(parts)):
            sources.setdefault(".".join(parts[:n]), "")
        sources[".".join(parts)] = text
    return sources


def test_a_planted_upward_import_fails_and_names_module_import_and_rule() -> None:
    sources = _tree(
        protocol__imap__parser="import re\n",
        store__api="from mailfort.server import listener\n",
        server__listener="import asyncio\n",
    )
    violations = check(sources, RULES)
    assert [str(v) for v in violations] == [
        "[may import] mailfort.store.api:1 imports mailfort.server.listener: layer store may"
        " import leaves (and itself), not server"
    ]


def test_imports_inside_functions_and_under_type_checking_count() -> None:
    sources = _tree(
        mail__accept=(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from mailfort.node import Node\n"
            "def f():\n"
            "    from mailfort.queue import retry\n"
        ),
        node="",
        queue__retry="",
    )
    found = {(v.rule, str(v.edge)) for v in check(sources, RULES)}
    assert ("may import", "mailfort.mail.accept:3 imports mailfort.node (under TYPE_CHECKING)") in (
        found
    )
    assert (
        "may import",
        "mailfort.mail.accept:5 imports mailfort.queue.retry (inside a function)",
    ) in found


def test_a_type_level_cycle_is_a_cycle() -> None:
    sources = _tree(
        node="from mailfort.status.web import context\n",
        status__web__context=(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from mailfort.node import Node\n"
        ),
    )
    rules = sorted(v.rule for v in check(sources, RULES))
    assert rules == ["may import", "no cycles"]
    cycle = next(v for v in check(sources, RULES) if v.rule == "no cycles")
    assert "mailfort.node:1 imports mailfort.status.web.context" in cycle.detail
    assert "mailfort.status.web.context:3 imports mailfort.node (under TYPE_CHECKING)" in (
        cycle.detail
    )


@pytest.mark.parametrize("engine", ["store.sqlite_queue", "store.postgres.queue"])
def test_engines_are_matched_by_prefix_flat_or_as_subpackages(engine: str) -> None:
    name = engine.replace(".", "__")
    sources = _tree(**{name: "import sqlite3\n"}, server__pop3=f"import mailfort.{engine}\n")
    assert [(v.rule, v.edge and v.edge.module) for v in check(sources, RULES)] == [
        ("engines", "mailfort.server.pop3")
    ]


def test_one_engine_may_not_import_the_other_and_drivers_stay_in_engines() -> None:
    sources = _tree(
        store__sqlite__queue="from mailfort.store.postgres import conn\n",
        store__postgres__conn="import asyncpg\n",
        mail__accept="import sqlite3\n",
    )
    assert sorted((v.rule, str(v.edge)) for v in check(sources, RULES)) == [
        ("drivers", "mailfort.mail.accept:1 imports sqlite3"),
        ("engines", "mailfort.store.sqlite.queue:1 imports mailfort.store.postgres.conn"),
    ]


def test_a_pure_module_may_not_reach_io_through_a_chain() -> None:
    sources = _tree(
        protocol__smtp__replies="from mailfort.mail import mime\n",
        mail__mime="from mailfort.mail import clock\n",
        mail__clock="import time\n",
    )
    [violation] = check(sources, RULES)
    assert violation.rule == "pure"
    assert violation.detail.startswith("mailfort.protocol.smtp.replies is pure logic and reaches")
    chain = "mailfort.mail.mime:1 imports mailfort.mail.clock → mailfort.mail.clock:1 imports time"
    assert chain in violation.detail


def test_a_module_outside_every_layer_fails() -> None:
    violations = check(_tree(supervisor="import os\n"), RULES)
    assert [str(v) for v in violations] == [
        "[placed] mailfort.supervisor belongs to no layer: add it to LAYERS"
    ]


def test_relative_imports_resolve() -> None:
    sources = _tree(
        store__api="from ..server import listener\nfrom . import notify\n",
        store__notify="",
        server__listener="",
    )
    assert [str(v.edge) for v in check(sources, RULES)] == [
        "mailfort.store.api:1 imports mailfort.server.listener"
    ]
