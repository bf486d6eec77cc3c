"""Every engine implements every role, method by method, with the role's own parameters.

An engine inherits each role protocol through `Store`; a method the engine forgot would be the
protocol's `...` body and quietly return None at run time. mypy catches that only where an
engine is instantiated in checked code, so this walks the roles themselves.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable

import pytest

from mailfort.store import roles
from mailfort.store.api import Store
from mailfort.store.postgres import PostgresStore
from mailfort.store.sqlite import SqliteStore

ROLES: tuple[type, ...] = (
    roles.Accounts,
    roles.AccountAdmin,
    roles.LoginNetworks,
    roles.Mailboxes,
    roles.Acceptance,
    roles.Queue,
    roles.Cluster,
    roles.Locks,
    roles.StatusRecords,
    roles.MailHealth,
    roles.CommitLoad,
    roles.DkimKeys,
    roles.Secrets,
    roles.Certificates,
    roles.SubmissionCounts,
    roles.TlsReports,
)
ENGINES = (SqliteStore, PostgresStore)
LIFECYCLE = {"open", "close", "schema_version"}


def members(cls: type) -> dict[str, object]:
    """The operations a class itself declares (methods and properties, not data attributes)."""
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))
    }


def parameters(fn: Callable[..., object]) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def declared_only(operation: object) -> bool:
    """True for a declaration without a body (a docstring and `...`), not a shared default."""
    fn = operation.fget if isinstance(operation, property) else operation
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))  # type: ignore[arg-type]
    body = tree.body[0].body  # type: ignore[attr-defined]
    return all(isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) for stmt in body)


def unimplemented(engine: type, role: type) -> list[str]:
    """Role operations the engine resolves to the role's bodiless declaration."""
    return [
        name
        for name, declared in members(role).items()
        if inspect.getattr_static(engine, name) is declared and declared_only(declared)
    ]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.__name__)
@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.__name__)
def test_engine_implements_the_role(engine: type, role: type) -> None:
    assert not unimplemented(engine, role), f"{engine.__name__} lacks {role.__name__} operations"
    for name, declared in members(role).items():
        if isinstance(declared, property):
            continue
        implemented = getattr(engine, name)
        assert inspect.iscoroutinefunction(implemented) == inspect.iscoroutinefunction(declared)
        assert parameters(implemented) == parameters(declared), f"{engine.__name__}.{name}"


def test_a_forgotten_operation_is_seen() -> None:
    class Forgetful(roles.Accounts, roles.Queue):
        async def get_account(self, address: str) -> None:
            return None

    assert "get_account" not in unimplemented(Forgetful, roles.Accounts)
    assert "list_domains" in unimplemented(Forgetful, roles.Accounts)
    # a role's shared default is an implementation, its bodiless neighbours are not
    assert "complete_queued" not in unimplemented(Forgetful, roles.Queue)
    assert "settle_queued" in unimplemented(Forgetful, roles.Queue)


def test_every_store_operation_belongs_to_exactly_one_role() -> None:
    owners: dict[str, list[str]] = {}
    for role in ROLES:
        for name in members(role):
            owners.setdefault(name, []).append(role.__name__)
    shared = {name: who for name, who in owners.items() if len(who) > 1}
    assert not shared, f"operations in more than one role: {shared}"
    public = {name for klass in Store.__mro__ if klass not in (object,) for name in members(klass)}
    orphans = public - owners.keys() - LIFECYCLE
    assert not orphans, f"Store operations that no role names: {sorted(orphans)}"
