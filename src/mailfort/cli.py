"""The `mailfort` command: every operation non-interactive, usable from scripts.

Exit status: 0 success, 1 the operation failed (message on stderr), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path

from mailfort import (
    __version__,
    cli_capacity,
    cli_capacity_measure,
    cli_capacity_upgrade,
    cli_dkim,
    cli_dns,
    cli_status,
)
from mailfort.config import Config, load
from mailfort.errors import AlreadyExists, ConfigError, MailfortError, NotFound
from mailfort.logs import configure as configure_logging
from mailfort.mail.address import AddressError, normalize, normalize_domain
from mailfort.store import open_store
from mailfort.store.api import Store
from mailfort.store.records import NodeInfo, QueueItem

Command = Callable[[Config, Store, argparse.Namespace], Awaitable[int]]


class CliError(MailfortError):
    pass


# Imported on use: `auth.passwords` computes an argon2 hash at import (~0.4 s) and `server.tls`
# loads cryptography; commands that need neither (list, queue, del) should not wait for them.
def generate_password() -> str:
    from mailfort.auth.passwords import generate_password

    return generate_password()


def hash_password(password: str) -> str:
    from mailfort.auth.passwords import hash_password

    return hash_password(password)


def _address(text: str) -> str:
    try:
        return normalize(text)
    except AddressError as exc:
        raise CliError(str(exc)) from None


def _domain(text: str) -> str:
    domain = normalize_domain(text.strip())
    if domain is None or "." not in domain:
        raise CliError(f"not a domain name: {text!r}")
    return domain


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated?) — from stdin with --password-stdin, else a random one."""
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CliError("empty password on standard input")
        return password, False
    return generate_password(), True


async def _local_domains(config: Config, store: Store) -> set[str]:
    return set(config.local_domains) | set(await store.list_domains())


# -- init -------------------------------------------------------------------------------------
async def cmd_init(config: Config, store: Store, args: argparse.Namespace) -> int:
    from mailfort.server.tls import ensure_self_signed

    ensure_self_signed(config.data_dir / "tls", config.hostname)
    print(f"store ready in {config.data_dir}")
    demo = args.demo and await store.count_accounts() == 0
    if demo:
        if "example.test" not in await store.list_domains():
            await store.add_domain("example.test")
        password = generate_password()
        await store.add_account("demo@example.test", hash_password(password))
        # RFC 5321 4.5.1: every mail domain must have a postmaster who reads its mail.
        await store.add_alias("postmaster@example.test", "demo@example.test")
        print("created domain example.test and user demo@example.test")
        print("  (postmaster@example.test is an alias of it)")
        print(f"  password: {password}")
        print("  (shown once; change it with: mailfort user passwd demo@example.test)")
    await cli_dkim.keys_for_new_domains(config, store, await _local_domains(config, store))
    return 0


# -- domains ----------------------------------------------------------------------------------
async def cmd_domain_add(config: Config, store: Store, args: argparse.Namespace) -> int:
    domain = _domain(args.name)
    await store.add_domain(domain)
    print(f"added domain {domain}")
    await cli_dkim.keys_for_new_domains(config, store, [domain])
    return 0


async def cmd_domain_list(config: Config, store: Store, args: argparse.Namespace) -> int:
    stored = await store.list_domains()
    for name in stored:
        print(name)
    for name in config.local_domains:
        if name not in stored:
            print(f"{name}\t(from config)")
    return 0


async def cmd_domain_del(config: Config, store: Store, args: argparse.Namespace) -> int:
    domain = _domain(args.name)
    users = await store.list_accounts(domain)
    if users and not args.force:
        raise CliError(
            f"domain {domain} still has {len(users)} user(s); delete them or use --force"
        )
    await store.delete_domain(domain)
    print(f"deleted domain {domain}")
    return 0


# -- users ------------------------------------------------------------------------------------
async def cmd_user_add(config: Config, store: Store, args: argparse.Namespace) -> int:
    address = _address(args.address)
    domain = address.rpartition("@")[2]
    if domain not in await _local_domains(config, store):
        raise CliError(
            f"{domain} is not a local domain; add it first: mailfort domain add {domain}"
        )
    # Before reading and hashing a password (argon2 is slow on purpose), so a script that
    # repeats itself gets its answer at once.
    if await store.get_account(address) is not None:
        raise AlreadyExists(f"user {address} already exists")
    password, generated = _read_password(args)
    await store.add_account(address, hash_password(password), quota_bytes=args.quota)
    print(f"added user {address}")
    if generated:
        print(f"  password: {password}")
    return 0


async def cmd_user_list(config: Config, store: Store, args: argparse.Namespace) -> int:
    for account in await store.list_accounts(_domain(args.domain) if args.domain else None):
        quota = f"{account.quota_bytes}" if account.quota_bytes else "unlimited"
        print(f"{account.address}\tused={account.used_bytes}\tquota={quota}")
    return 0


async def cmd_user_passwd(config: Config, store: Store, args: argparse.Namespace) -> int:
    address = _address(args.address)
    if await store.get_account(address) is None:
        raise NotFound(f"no user {address}")
    password, generated = _read_password(args)
    await store.set_password(address, hash_password(password))
    print(f"changed password of {address}")
    if generated:
        print(f"  password: {password}")
    return 0


async def cmd_user_del(config: Config, store: Store, args: argparse.Namespace) -> int:
    address = _address(args.address)
    await store.delete_account(address)
    print(f"deleted user {address} and all their mail")
    return 0


# -- aliases ----------------------------------------------------------------------------------
def _alias_source(text: str) -> str:
    if text.startswith("@"):
        return "@" + _domain(text[1:])
    return _address(text)


async def cmd_alias_add(config: Config, store: Store, args: argparse.Namespace) -> int:
    source = _alias_source(args.source)
    domain = source.rpartition("@")[2]
    if domain not in await _local_domains(config, store):
        raise CliError(
            f"{domain} is not a local domain; add it first: mailfort domain add {domain}"
        )
    targets = [_address(t) for t in args.targets]
    # Checked up front so that a repeated target fails the command before it half-applies.
    existing = set(await store.alias_targets(source)) & set(targets)
    if existing:
        raise AlreadyExists(f"alias {source} -> {', '.join(sorted(existing))} already exists")
    for target in dict.fromkeys(targets):
        await store.add_alias(source, target)
    print(f"added alias {source} -> {', '.join(targets)}")
    return 0


async def cmd_alias_list(config: Config, store: Store, args: argparse.Namespace) -> int:
    for alias in await store.list_aliases(_domain(args.domain) if args.domain else None):
        kind = "\t(catch-all)" if alias.source.startswith("@") else ""
        print(f"{alias.source}\t{alias.target}{kind}")
    return 0


async def cmd_alias_del(config: Config, store: Store, args: argparse.Namespace) -> int:
    source = _alias_source(args.source)
    target = _address(args.target) if args.target else None
    await store.delete_alias(source, target)
    print(f"deleted alias {source}" + (f" -> {target}" if target else ""))
    return 0


# -- queue ------------------------------------------------------------------------------------
def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


async def cmd_queue_list(config: Config, store: Store, args: argparse.Namespace) -> int:
    items = await store.queue_items()
    if not items:
        print("queue is empty")
        return 0
    now = await store.clock()
    print(f"{'QUEUE ID':<22} {'AGE':>5} {'SIZE':>9} {'TRIES':>5} {'NEXT':>6}  SENDER / RECIPIENT")
    by_id: dict[str, list[QueueItem]] = {}
    for item in items:
        by_id.setdefault(item.queue_id, []).append(item)
    for queue_id, group in by_id.items():
        first = group[0]
        tries = max(i.attempts for i in group)
        due = min(i.next_attempt for i in group) - now
        print(
            f"{queue_id:<22} {_age(now - first.received):>5} {first.size:>9} {tries:>5}"
            f" {_age(due):>6}  {first.sender or '<>'}"
        )
        for item in group:
            error = f"  ({item.last_error})" if item.last_error else ""
            print(f"{'':<53}-> {item.recipient}{error}")
    recipients = len(items)
    print(f"-- {len(by_id)} message(s), {recipients} recipient(s)")
    return 0


async def cmd_queue_show(config: Config, store: Store, args: argparse.Namespace) -> int:
    items = await store.queue_items(args.queue_id)
    if not items:
        raise CliError(f"no queued message {args.queue_id}")
    first = items[0]
    now = await store.clock()
    print(f"queue id:  {first.queue_id}")
    print(f"sender:    <{first.sender}>")
    print(
        f"received:  {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(first.received))} UTC"
        f" ({_age(now - first.received)} ago)"
    )
    print(f"size:      {first.size} bytes")
    for item in items:
        lease = f", leased by {item.lease_owner}" if item.lease_owner else ""
        print(
            f"recipient: {item.recipient} (for {item.original}): {item.attempts} attempt(s),"
            f" next in {_age(item.next_attempt - now)}{lease}"
        )
        if item.last_attempt is not None:
            where = f" from {item.remote_mta}" if item.remote_mta else ""
            print(
                f"           last attempt: {_age(now - item.last_attempt)} ago,"
                f" status {item.last_status or '?'}{where}"
            )
        if item.last_error:
            print(f"           last error: {item.last_error}")
        if item.warned:
            print("           delay warning sent to the sender")
    body = await store.queue_body(args.queue_id)
    if body is not None:
        header_end = body.find(b"\r\n\r\n")
        print("headers:")
        print(body[: header_end if header_end >= 0 else 4096].decode("utf-8", "replace"))
    return 0


async def cmd_queue_retry(config: Config, store: Store, args: argparse.Namespace) -> int:
    if not args.queue_id and not args.all:
        raise CliError("name a queue id, or use --all")
    count = await store.retry_queue(None if args.all else args.queue_id, await store.clock())
    if count == 0 and args.queue_id:
        raise CliError(f"no queued message {args.queue_id}")
    print(f"{count} recipient(s) due now")
    return 0


async def cmd_queue_delete(config: Config, store: Store, args: argparse.Namespace) -> int:
    count = await store.delete_queue(args.queue_id)
    if count == 0:
        raise CliError(f"no queued message {args.queue_id}")
    logging.getLogger("mailfort.queue").warning(
        "event=queue_deleted id=%s recipients=%d by=cli", args.queue_id, count
    )
    print(f"deleted {args.queue_id} ({count} recipient(s))")
    return 0


# -- parser -----------------------------------------------------------------------------------
# -- cluster ----------------------------------------------------------------------------------
async def cmd_cluster_status(config: Config, store: Store, args: argparse.Namespace) -> int:
    from mailfort.cluster.status import cluster_status, format_status
    from mailfort.status.margin import margin_line

    found = await cluster_status(store, await store.clock(), config.cluster.heartbeat_seconds)
    line = await margin_line(
        config.capacity,
        store,
        window_seconds=config.status.window_seconds,
        heartbeat_seconds=config.cluster.heartbeat_seconds,
    )
    print(format_status(found, line))
    return 0


async def _node(store: Store, name: str) -> NodeInfo:
    for node in await store.list_nodes():
        if node.name == name:
            return node
    raise CliError(f"no node {name!r} (see: mailfort cluster status)")


def _is_worker_of(name: str, node_name: str) -> bool:
    """Whether cluster member `name` is a worker of node `node_name`: `serve --workers N` names
    them `<node_name>-w<i>` (`cli_serve.worker_name`)."""
    prefix = f"{node_name}-w"
    return name.startswith(prefix) and name[len(prefix) :].isdigit()


async def cmd_node_drain(config: Config, store: Store, args: argparse.Namespace) -> int:
    nodes = await store.list_nodes()
    if not any(node.name == args.name for node in nodes):
        # A node served by several processes is drained whole by its own name.
        workers = [n.name for n in nodes if _is_worker_of(n.name, args.name) and n.state != "gone"]
        if workers:
            for name in workers:
                await store.set_node_state(name, "draining")
            print(
                f"node {args.name} ({len(workers)} workers: {', '.join(workers)}) told to drain:"
                f" each stops accepting at its next heartbeat (every"
                f" {config.cluster.heartbeat_seconds:g}s), lets sessions finish for up to"
                f" {config.cluster.drain_seconds:g}s, releases its leases and exits"
            )
            return 0
    node = await _node(store, args.name)
    if node.state == "gone":
        print(f"node {args.name} is gone already")
        return 0
    await store.set_node_state(args.name, "draining")
    print(
        f"node {args.name} told to drain: it stops accepting at its next heartbeat"
        f" (every {config.cluster.heartbeat_seconds:g}s), lets sessions finish for up to"
        f" {config.cluster.drain_seconds:g}s, releases its leases and exits"
    )
    return 0


async def cmd_node_forget(config: Config, store: Store, args: argparse.Namespace) -> int:
    from mailfort.cluster.status import effective_state

    node = await _node(store, args.name)
    now = await store.clock()
    state = effective_state(node, now, config.cluster.heartbeat_seconds)
    if state == "gone":
        print(f"node {args.name} is gone already")
        return 0
    if state != "dead":
        # A live node marked gone would go on working while the status page and the cluster
        # stopped counting it; a live node leaves by draining.
        raise CliError(
            f"node {args.name} is {state} (last heartbeat {now - node.heartbeat:.0f}s ago):"
            f" only a dead node can be forgotten; to take a running node out: mailfort node"
            f" drain {args.name}"
        )
    await store.set_node_state(args.name, "gone")
    # Its queue leases are left to expire ([queue] lease_seconds): a node that only lost the
    # store for a while may still be delivering what it holds, and releasing them early could
    # deliver a message twice.
    print(
        f"node {args.name} marked gone: it no longer counts as an expected node (status page,"
        f" 'live nodes'); its queue leases expire by themselves. Started again, it rejoins."
    )
    return 0


def _worker_count(text: str) -> int:
    from mailfort.config import MAX_WORKERS

    if not text.isdigit() or int(text) > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected 0 (one per CPU) to {MAX_WORKERS}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailfort",
        description="mailfort: a mail platform for providers (SMTP, submission, IMAP, POP3).",
        epilog="Without a subcommand: show this help. Docs: README.md",
    )
    parser.add_argument("--version", action="version", version=f"mailfort {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML configuration (default: ./mailfort.toml if present)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = sub.add_parser("init", help="create the data directory, store and TLS certificate")
    init.add_argument(
        "--demo",
        action="store_true",
        help="also create example.test and demo@example.test if there are no users",
    )
    init.set_defaults(func=cmd_init)
    serve = sub.add_parser("serve", help="run a node in the foreground")
    serve.add_argument(
        "--workers",
        type=_worker_count,
        metavar="N",
        help="node processes sharing the listeners (PostgreSQL only; default: `workers` in the"
        " config, else one per CPU on PostgreSQL and 1 on SQLite)",
    )
    serve.set_defaults(func=None)

    domain = sub.add_parser("domain", help="local domains").add_subparsers(
        dest="action", required=True
    )
    p = domain.add_parser("add", help="accept mail for a domain")
    p.add_argument("name")
    p.set_defaults(func=cmd_domain_add)
    p = domain.add_parser("list", help="list local domains")
    p.set_defaults(func=cmd_domain_list)
    p = domain.add_parser("del", help="stop accepting mail for a domain")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="even if users remain")
    p.set_defaults(func=cmd_domain_del)

    user = sub.add_parser("user", help="mail accounts").add_subparsers(dest="action", required=True)
    p = user.add_parser("add", help="create a user with INBOX, Sent, Drafts, Trash, Junk, Archive")
    p.add_argument("address")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: generate one)",
    )
    p.add_argument("--quota", type=int, default=0, metavar="BYTES", help="0 = unlimited")
    p.set_defaults(func=cmd_user_add)
    p = user.add_parser("list", help="list users")
    p.add_argument("--domain")
    p.set_defaults(func=cmd_user_list)
    p = user.add_parser("passwd", help="set a user's password")
    p.add_argument("address")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: generate one)",
    )
    p.set_defaults(func=cmd_user_passwd)
    p = user.add_parser("del", help="delete a user and all their mail")
    p.add_argument("address")
    p.set_defaults(func=cmd_user_del)

    alias = sub.add_parser("alias", help="aliases and catch-alls").add_subparsers(
        dest="action", required=True
    )
    p = alias.add_parser("add", help="SOURCE (an address, or @domain for a catch-all) -> TARGET...")
    p.add_argument("source")
    p.add_argument("targets", nargs="+", metavar="target")
    p.set_defaults(func=cmd_alias_add)
    p = alias.add_parser("list", help="list aliases")
    p.add_argument("--domain")
    p.set_defaults(func=cmd_alias_list)
    p = alias.add_parser("del", help="delete an alias (all its targets, or one)")
    p.add_argument("source")
    p.add_argument("target", nargs="?")
    p.set_defaults(func=cmd_alias_del)

    queue = sub.add_parser("queue", help="the mail queue (like mailq/postqueue)").add_subparsers(
        dest="action", required=True
    )
    p = queue.add_parser("list", help="queued messages with age, recipients, attempts, last error")
    p.set_defaults(func=cmd_queue_list)
    p = queue.add_parser("show", help="one queued message in detail")
    p.add_argument("queue_id")
    p.set_defaults(func=cmd_queue_show)
    p = queue.add_parser("retry", help="make a queued message (or --all) due now")
    p.add_argument("queue_id", nargs="?")
    p.add_argument("--all", action="store_true")
    p.set_defaults(func=cmd_queue_retry)
    p = queue.add_parser("delete", help="remove a queued message (logged)")
    p.add_argument("queue_id")
    p.set_defaults(func=cmd_queue_delete)

    cluster = sub.add_parser("cluster", help="the nodes sharing this store").add_subparsers(
        dest="action", required=True
    )
    p = cluster.add_parser(
        "status", help="every node: state, last heartbeat, queue leases held, load, listeners"
    )
    p.set_defaults(func=cmd_cluster_status)
    node = sub.add_parser("node", help="one node of the cluster").add_subparsers(
        dest="action", required=True
    )
    p = node.add_parser("drain", help="make a running node finish its sessions and exit")
    p.add_argument(
        "name",
        help="the node's name (node_name in its config): all its workers, or one (NAME-wI)",
    )
    p.set_defaults(func=cmd_node_drain)
    p = node.add_parser(
        "forget", help="mark a dead node that will not come back as gone (no longer expected)"
    )
    p.add_argument("name", help="the node's name (node_name in its config)")
    p.set_defaults(func=cmd_node_forget)
    cli_status.add_parser(sub)
    cli_dns.add_parser(sub)
    cli_dkim.add_parser(sub)
    capacity = cli_capacity.add_parser(sub)
    cli_capacity_measure.add_measure_parser(capacity)
    cli_capacity_upgrade.add_upgrade_parser(capacity)
    return parser


async def _run(func: Command, config: Config, args: argparse.Namespace) -> int:
    store = open_store(config.store.url, config.data_dir)
    await store.open()
    try:
        return await func(config, store, args)
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # Commands that open no store and read no configuration (`capacity plan`, `capacity
    # measure` starts a node of its own): they run as they are, with their own exit status.
    standalone = getattr(args, "standalone", None)
    if standalone is not None:
        configure_logging(batched=False, stream=sys.stderr)
        return guarded(lambda: int(standalone(args)))
    # A serving node logs a line per message: batch the writes there; the CLI writes at once.
    configure_logging(batched=args.command == "serve", stream=sys.stderr)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"mailfort: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return guarded(lambda: _serve(config, args.workers))
    return guarded(lambda: asyncio.run(_run(args.func, config, args)))


def _serve(config: Config, workers: int | None) -> int:
    from mailfort.cli_serve import Supervisor, worker_count

    count = worker_count(config, workers)
    if count == 1:
        from mailfort.node import serve

        return asyncio.run(serve(config))
    return asyncio.run(Supervisor(config, count, run_worker).run())


def run_worker(config: Config, channel: Connection) -> None:
    """A worker process of `serve --workers N`, spawned by its supervisor (`cli_serve`)."""
    from mailfort.cli_serve import serve_worker

    configure_logging(batched=True, stream=sys.stderr)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sys.exit(guarded(lambda: asyncio.run(serve_worker(config, channel))))


def guarded(command: Callable[[], int]) -> int:
    """Run `command`, its errors made one line on stderr and an exit status (module docstring)."""
    try:
        return command()
    except ConfigError as exc:
        print(f"mailfort: config error: {exc}", file=sys.stderr)
        return 2
    except cli_status.UsageError as exc:
        print(f"mailfort: {exc}", file=sys.stderr)
        return 2
    except MailfortError as exc:
        print(f"mailfort: {exc}", file=sys.stderr)
    except OSError as exc:
        print(
            f"mailfort: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "),
            file=sys.stderr,
        )
    except KeyboardInterrupt:
        return 130
    return 1
