"""`mailfort status …`: what the status page shows, and the operator's incidents, maintenance
windows and webhook subscriptions.

The commands write through `StatusRepository`, the same records every node's status page reads,
so a change shows on every node within its page cache time. Exit status as for every command:
0 done, 1 the operation failed (unknown id, resolved incident), 2 a value was not understood.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from mailfort.config import Config
from mailfort.errors import MailfortError, NotFound
from mailfort.status.components import Component, ComponentState
from mailfort.status.incidents import Incident, IncidentStatus, Maintenance
from mailfort.status.margin import margin_line
from mailfort.status.repository import StatusRepository, check_webhook_url
from mailfort.store.api import Store


class UsageError(MailfortError):
    """A value on the command line was not understood (exit status 2)."""


class StatusCliError(MailfortError):
    """The operation could not be done (exit status 1)."""


COMPONENT_NAMES = ", ".join(c.value for c in Component)
STATE_NAMES = ", ".join(s.value for s in ComponentState)
# Short forms an operator types without looking them up.
_STATE_ALIASES = {"degraded": ComponentState.DEGRADED, "down": ComponentState.PARTIAL_OUTAGE}
_OPEN_STATUSES = [s.value for s in IncidentStatus if s is not IncidentStatus.RESOLVED]
TIME_HELP = "ISO 8601 with a time zone, e.g. 2026-12-01T02:00Z or 2026-12-01T03:00+01:00"


# -- parsing values ---------------------------------------------------------------------------
def parse_time(text: str, what: str) -> float:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{what}: not a time: {text!r} (use {TIME_HELP})") from None
    if when.tzinfo is None:
        # A bare local time means different moments on different servers: refuse to guess.
        raise UsageError(f"{what}: {text!r} has no time zone (add Z for UTC, or +01:00)")
    return when.timestamp()


def parse_component(text: str) -> Component:
    try:
        return Component(text.strip().lower())
    except ValueError:
        raise UsageError(f"unknown component {text!r} (one of: {COMPONENT_NAMES})") from None


def parse_state(text: str) -> ComponentState:
    key = text.strip().lower().replace("-", "_").replace(" ", "_")
    if key in _STATE_ALIASES:
        return _STATE_ALIASES[key]
    try:
        return ComponentState(key)
    except ValueError:
        raise UsageError(f"unknown state {text!r} (one of: {STATE_NAMES})") from None


def parse_component_states(values: list[str] | None) -> dict[Component, ComponentState]:
    states: dict[Component, ComponentState] = {}
    for value in values or ():
        name, sep, state = value.partition("=")
        if not sep:
            raise UsageError(
                f"--component {value!r}: give a component and its state, e.g. imap=partial_outage"
            )
        component = parse_component(name)  # named first: its error is the one to show
        states[component] = parse_state(state)
    return states


def parse_status(text: str | None) -> IncidentStatus | None:
    if text is None:
        return None
    try:
        status = IncidentStatus(text.strip().lower())
    except ValueError:
        status = None
    if status is None or status is IncidentStatus.RESOLVED:
        raise UsageError(
            f"unknown status {text!r} (one of: {', '.join(_OPEN_STATUSES)};"
            " to resolve use: mailfort status incident resolve)"
        )
    return status


def _text(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise UsageError(f"{what} must not be empty")
    return value


# -- output -----------------------------------------------------------------------------------
def _at(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _state(state: ComponentState) -> str:
    return state.value.replace("_", " ")


def _affects(components: Mapping[Component, ComponentState]) -> str:
    if not components:
        return ""
    return " (" + ", ".join(f"{c.value}: {_state(s)}" for c, s in components.items()) + ")"


def _incident_line(incident: Incident) -> str:
    return (
        f"{incident.id:<8} {incident.status.value:<13} {incident.origin.value:<9}"
        f" opened {_at(incident.opened_at)}  {incident.title}{_affects(incident.components)}"
    )


def _maintenance_line(window: Maintenance, now: float) -> str:
    where = f" ({', '.join(c.value for c in window.components)})" if window.components else ""
    return (
        f"{window.id:<8} {window.status(now).value:<11} {_at(window.starts_at)} -"
        f" {_at(window.ends_at)}  {window.title}{where}"
    )


def _latest_text(incident: Incident) -> str | None:
    for entry in reversed(incident.timeline):
        if entry.text:
            return entry.text
    return None


def _repo(config: Config, store: Store) -> StatusRepository:
    return StatusRepository(store, history_days=config.status.history_days)


# -- commands ---------------------------------------------------------------------------------
async def cmd_status_show(config: Config, store: Store, args: argparse.Namespace) -> int:
    status = _repo(config, store)
    now = time.time()
    components = await status.components()
    incidents = await status.incidents(open_only=True, limit=200)
    print("components:")
    for component, published in components.items():
        since = f" since {_at(published.since)}" if published.since is not None else ""
        # The page shows the worse of the measured state and what an open incident declares;
        # say where a declared state comes from, so the two views never seem to disagree.
        declared = [(i.id, i.components[component]) for i in incidents if component in i.components]
        worst = max(declared, key=lambda d: d[1].severity, default=None)
        note = ""
        if worst is not None and worst[1].severity > published.state.severity:
            note = f" (measured); {_state(worst[1])} per {worst[0]}"
        print(f"  {component.display_name:<22} {_state(published.state)}{since}{note}")
    print("open incidents:" if incidents else "open incidents: none")
    for incident in incidents:
        print(f"  {_incident_line(incident)}")
        latest = _latest_text(incident)
        if latest:
            print(f"  {'':<8} latest: {latest} ({_at(incident.updated_at)})")
    windows = await status.maintenance(now)
    print("maintenance:" if windows else "maintenance: none scheduled")
    for window in windows:
        print(f"  {_maintenance_line(window, now)}")
    # The operator's own signal, never on the public page: how many nodes may fail now.
    line = await margin_line(
        config.capacity,
        store,
        window_seconds=config.status.window_seconds,
        heartbeat_seconds=config.cluster.heartbeat_seconds,
    )
    print(f"capacity {line} (operator only; not on the public page)")
    return 0


async def cmd_incident_open(config: Config, store: Store, args: argparse.Namespace) -> int:
    title, text = _text(args.title, "--title"), _text(args.text, "--text")
    components = parse_component_states(args.component)
    status = parse_status(args.status) or IncidentStatus.INVESTIGATING
    incident = await _repo(config, store).open_incident(
        time.time(), title, text, components, status
    )
    print(incident.id)
    return 0


async def _update(
    config: Config,
    store: Store,
    incident_id: str,
    text: str,
    status: IncidentStatus | None,
    components: dict[Component, ComponentState],
) -> Incident:
    try:
        return await _repo(config, store).update_incident(
            time.time(), incident_id, text, status, components or None
        )
    except NotFound:
        raise StatusCliError(
            f"no incident {incident_id} (see: mailfort status incident list --all)"
        ) from None
    except ValueError as exc:  # resolved already
        raise StatusCliError(str(exc)) from None


async def cmd_incident_update(config: Config, store: Store, args: argparse.Namespace) -> int:
    text = _text(args.text, "--text")
    components = parse_component_states(args.component)
    incident = await _update(config, store, args.id, text, parse_status(args.status), components)
    print(f"updated {incident.id} ({incident.status.value})")
    return 0


async def cmd_incident_resolve(config: Config, store: Store, args: argparse.Namespace) -> int:
    text = _text(args.text, "--text")
    incident = await _update(config, store, args.id, text, IncidentStatus.RESOLVED, {})
    print(f"resolved {incident.id}")
    return 0


async def cmd_incident_list(config: Config, store: Store, args: argparse.Namespace) -> int:
    incidents = await _repo(config, store).incidents(open_only=not args.all, limit=args.limit)
    if not incidents:
        print("no incidents" if args.all else "no open incidents")
    for incident in incidents:
        print(_incident_line(incident))
    return 0


async def cmd_maintenance_add(config: Config, store: Store, args: argparse.Namespace) -> int:
    title, text = _text(args.title, "--title"), _text(args.text, "--text")
    starts_at, ends_at = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    if ends_at <= starts_at:
        raise UsageError("--end must be after --start")
    components = tuple(dict.fromkeys(parse_component(c) for c in args.component or ()))
    window = await _repo(config, store).add_maintenance(title, text, starts_at, ends_at, components)
    print(window.id)
    return 0


async def cmd_maintenance_list(config: Config, store: Store, args: argparse.Namespace) -> int:
    now = time.time()
    windows = await _repo(config, store).maintenance(now, include_past=args.all)
    if not windows:
        print("no maintenance" if args.all else "no maintenance scheduled")
    for window in windows:
        print(_maintenance_line(window, now))
    return 0


async def cmd_maintenance_cancel(config: Config, store: Store, args: argparse.Namespace) -> int:
    text = _text(args.text, "--text")
    try:
        window = await _repo(config, store).cancel_maintenance(time.time(), args.id, text)
    except NotFound:
        raise StatusCliError(
            f"no maintenance {args.id} (see: mailfort status maintenance list --all)"
        ) from None
    except ValueError as exc:  # cancelled already
        raise StatusCliError(str(exc)) from None
    print(f"cancelled {window.id}")
    return 0


async def cmd_webhook_add(config: Config, store: Store, args: argparse.Namespace) -> int:
    try:
        url = check_webhook_url(args.url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    components = tuple(dict.fromkeys(parse_component(c) for c in args.component or ()))
    hook = await _repo(config, store).add_webhook(url, components)
    print(hook.id)
    return 0


async def cmd_webhook_list(config: Config, store: Store, args: argparse.Namespace) -> int:
    hooks = await _repo(config, store).webhooks()
    if not hooks:
        print("no webhooks")
    for hook in hooks:
        which = ", ".join(c.value for c in hook.components) or "all components"
        print(f"{hook.id:<8} {hook.url}  ({which}; since {_at(hook.created_at)})")
    return 0


async def cmd_webhook_remove(config: Config, store: Store, args: argparse.Namespace) -> int:
    if not await _repo(config, store).remove_webhook(args.id):
        raise StatusCliError(f"no webhook {args.id} (see: mailfort status webhook list)")
    print(f"removed webhook {args.id}")
    return 0


# -- parser -----------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `status` and its subcommands to the `mailfort` parser."""
    status = sub.add_parser(
        "status",
        help="the public status page: components, incidents, maintenance, webhooks",
        description="Read and write what the status page shows. Components are switched"
        " automatically from health signals; incidents and maintenance windows written here"
        " are the operator's own and are never closed automatically.",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")

    p = status.add_parser(
        "show", help="current state of each component, open incidents, upcoming maintenance"
    )
    p.set_defaults(func=cmd_status_show)

    component_state = (
        f"a component and its state, e.g. imap=partial_outage; repeat for more."
        f" Components: {COMPONENT_NAMES}. States: {STATE_NAMES}"
    )
    statuses = ", ".join(_OPEN_STATUSES)

    incident = status.add_parser("incident", help="open, update, resolve and list incidents")
    actions = incident.add_subparsers(dest="incident_action", required=True, metavar="ACTION")
    p = actions.add_parser("open", help="open an incident; prints its id (e.g. inc-7)")
    p.add_argument("--title", required=True, help="one line that names the problem")
    p.add_argument("--text", required=True, help="the first update customers read")
    p.add_argument("--component", action="append", metavar="NAME=STATE", help=component_state)
    p.add_argument("--status", metavar="STATUS", help=f"{statuses} (default: investigating)")
    p.set_defaults(func=cmd_incident_open)
    p = actions.add_parser("update", help="add an update to an open incident")
    p.add_argument("id", help="the incident id, e.g. inc-7")
    p.add_argument("--text", required=True, help="what customers read in this update")
    p.add_argument("--status", metavar="STATUS", help=f"{statuses} (default: unchanged)")
    p.add_argument(
        "--component",
        action="append",
        metavar="NAME=STATE",
        help=component_state + " (others stay as they are)",
    )
    p.set_defaults(func=cmd_incident_update)
    p = actions.add_parser("resolve", help="resolve an incident with a last update")
    p.add_argument("id", help="the incident id, e.g. inc-7")
    p.add_argument("--text", required=True, help="the closing update customers read")
    p.set_defaults(func=cmd_incident_resolve)
    p = actions.add_parser("list", help="open incidents, newest update first")
    p.add_argument("--all", action="store_true", help="resolved ones too")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.set_defaults(func=cmd_incident_list)

    maintenance = status.add_parser("maintenance", help="scheduled maintenance windows")
    actions = maintenance.add_subparsers(dest="maintenance_action", required=True, metavar="ACTION")
    p = actions.add_parser("add", help="announce a maintenance window; prints its id (e.g. mnt-3)")
    p.add_argument("--title", required=True, help="one line, e.g. 'Storage upgrade'")
    p.add_argument("--text", required=True, help="what customers should know about it")
    p.add_argument("--start", required=True, metavar="TIME", help=f"when it starts: {TIME_HELP}")
    p.add_argument("--end", required=True, metavar="TIME", help=f"when it ends: {TIME_HELP}")
    p.add_argument(
        "--component",
        action="append",
        metavar="NAME",
        help=f"a component it affects; repeat for more ({COMPONENT_NAMES}); default: none named",
    )
    p.set_defaults(func=cmd_maintenance_add)
    p = actions.add_parser("list", help="scheduled and running windows, soonest first")
    p.add_argument("--all", action="store_true", help="completed and cancelled ones too")
    p.set_defaults(func=cmd_maintenance_list)
    p = actions.add_parser("cancel", help="cancel a window, with a note for customers")
    p.add_argument("id", help="the window id, e.g. mnt-3")
    p.add_argument("--text", required=True, help="why, for customers")
    p.set_defaults(func=cmd_maintenance_cancel)

    webhook = status.add_parser(
        "webhook", help="URLs notified when a component, incident or maintenance window changes"
    )
    actions = webhook.add_subparsers(dest="webhook_action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "add", help="subscribe a URL; prints its id (a random token: keep it to unsubscribe)"
    )
    p.add_argument("url", help="an http:// or https:// URL")
    p.add_argument(
        "--component",
        action="append",
        metavar="NAME",
        help=f"only changes of this component; repeat for more ({COMPONENT_NAMES}); default: all",
    )
    p.set_defaults(func=cmd_webhook_add)
    p = actions.add_parser("list", help="subscribed URLs")
    p.set_defaults(func=cmd_webhook_list)
    p = actions.add_parser("remove", help="unsubscribe a URL by its id")
    p.add_argument("id", help="the webhook id, as printed by add and list")
    p.set_defaults(func=cmd_webhook_remove)
