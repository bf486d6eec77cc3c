"""PostgreSQL with a synchronous streaming standby that can be failed over, for chaos tests.

`PgPair` runs two servers in private directories the way an operator runs them with Patroni,
without Patroni: a primary with `synchronous_standby_names = '*'`, so a COMMIT returns only after
the standby has flushed its WAL, and a standby built with `pg_basebackup -R`. `failover()` fences
the primary (immediate stop), promotes the standby and rebuilds the old primary as the new one's
standby; `restart_primary()` is the plain "the database restarted" fault. Nodes reach whichever
server is the primary through `dsn`, a multi-host URL with `target_session_attrs=read-write`.

The promise under test: a transaction committed while the standby was in sync is on the promoted
server. `failover()` returns only when replication is synchronous again, so the next failover keeps
that promise too.

Root runs the servers as the `postgres` user (initdb refuses root), like scripts/ensure-postgres;
`root` must then be a directory that user can reach (under /tmp, not pytest's 0700 tmp_path).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROLE = "mailfort"
DATABASE = "mailfort_test"
SUPERUSER = "postgres"

# Every server gets these (the standby inherits the file through pg_basebackup). A standby retries
# its primary every 5 s by default: after a primary restart commits would wait that long for it.
_CONF = """
fsync = on
synchronous_commit = on
wal_level = replica
max_wal_senders = 10
hot_standby = on
max_connections = 300
shared_buffers = 32MB
wal_retrieve_retry_interval = 200ms
wal_receiver_status_interval = 1s
"""
# Test servers on loopback and the chaos campaign's private namespace addresses only.
_HBA = "host all all all trust\nhost replication all all trust\n"


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL server binaries, as scripts/ensure-postgres picks them."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if not found:
        return None
    return max(found, key=lambda p: tuple(int(x) for x in p.parent.name.split(".") if x.isdigit()))


def unavailable_reason() -> str | None:
    """Why a PgPair cannot run here, or None when it can."""
    if pg_bindir() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0:
        try:
            subprocess.run(["id", SUPERUSER], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return f"running as root needs the '{SUPERUSER}' user to own the servers"
    return None


@dataclass(frozen=True)
class Failover:
    """How long one failover took, from the fence: until a server took writes again, and until
    commits waited for a standby again."""

    writable_after: float
    synchronous_after: float


@dataclass
class PgServer:
    """One server of the pair: `root` holds its data directory, socket directory and log."""

    name: str
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sock(self) -> Path:
        return self.root / "sock"

    @property
    def log(self) -> Path:
        return self.root / "server.log"


class PgPair:
    """A primary and a synchronous streaming standby, private directories, as an operator runs
    them (Patroni-style, without Patroni)."""

    def __init__(
        self,
        root: Path,
        ports: tuple[int, int],
        listen: str = "127.0.0.1",
        host: str = "127.0.0.1",
    ) -> None:
        self.root = root
        self.listen = listen
        self.host = host
        self.servers = [
            PgServer("pg0", root / "pg0", ports[0]),
            PgServer("pg1", root / "pg1", ports[1]),
        ]
        self._primary = 0
        self.failovers: list[Failover] = []
        self.restarts = 0
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError(unavailable_reason() or "no PostgreSQL")
        self.bin = bindir
        self._as_owner: list[str] = ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []

    # -- addresses -----------------------------------------------------------------------------
    @property
    def primary(self) -> PgServer:
        return self.servers[self._primary]

    @property
    def standby(self) -> PgServer:
        return self.servers[1 - self._primary]

    @property
    def dsn(self) -> str:
        """Both servers, in a fixed order: a client takes the first that accepts writes."""
        hosts = ",".join(f"{self.host}:{s.port}" for s in self.servers)
        return f"postgresql://{ROLE}@{hosts}/{DATABASE}?target_session_attrs=read-write"

    def primary_dsn(self) -> str:
        return f"postgresql://{ROLE}@{self.host}:{self.primary.port}/{DATABASE}"

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """initdb the primary, create the role and database, attach a synchronous standby."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._own(self.root)
        for server in self.servers:
            server.root.mkdir(exist_ok=True)
            server.sock.mkdir(exist_ok=True)
            self._own(server.root)
            self._own(server.sock)
        if self._as_owner:
            try:
                self._run([*self._as_owner, "test", "-w", str(self.root)], None)
            except RuntimeError as exc:
                raise RuntimeError(
                    f"the {SUPERUSER} user cannot reach {self.root}: put it under /tmp"
                ) from exc
        primary = self.primary
        self._owner_run(
            str(self.bin / "initdb"),
            "-D",
            str(primary.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.write(_CONF)
        with (primary.data / "pg_hba.conf").open("a") as hba:
            hba.write(_HBA)
        self._start(primary)
        self.sql(primary, f"CREATE ROLE {ROLE} LOGIN CREATEDB")
        self.sql(primary, f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        self._attach_standby()

    def restart_primary(self, down_seconds: float = 0.0) -> None:
        """The database restarted: a fast stop (sessions are cut, a clean shutdown checkpoint),
        `down_seconds` away, started again; returns when the standby is in sync again."""
        self._pg_ctl(self.primary, "stop", "-m", "fast", "-w", "-t", "60")
        time.sleep(down_seconds)
        self._start(self.primary)
        self._wait_sync()
        self.restarts += 1

    def failover(self) -> Failover:
        """Fence the primary (immediate stop), promote the standby, rebuild the old primary as
        its standby and bring synchronous replication back."""
        fenced = time.monotonic()
        self._pg_ctl(self.primary, "stop", "-m", "immediate", "-w", "-t", "60")
        self.promote()
        writable = time.monotonic()
        self.rebuild_standby()
        record = Failover(writable - fenced, time.monotonic() - fenced)
        self.failovers.append(record)
        return record

    def fence_read_only(self) -> None:
        """The primary refuses writes from now on and keeps its sessions, as an operator fences
        it before a planned switchover (`default_transaction_read_only`)."""
        self.sql(self.primary, "ALTER SYSTEM SET default_transaction_read_only = on")
        self.sql(self.primary, "SELECT pg_reload_conf()")

    def promote(self) -> None:
        """Promote the standby; the primary must be fenced already (stopped or read-only)."""
        new = self.standby
        # Patroni's non-strict synchronous mode: with no standby attached the new primary commits
        # without waiting for one, or every commit would hang until the rebuild is done. The
        # window lasts until `rebuild_standby` returns; a failover inside it could lose those
        # commits, which is why `failover` returns only once replication is synchronous again.
        # ALTER SYSTEM only writes a file, so a standby accepts it.
        self.sql(new, "ALTER SYSTEM SET synchronous_standby_names = ''")
        self.sql(new, "SELECT pg_reload_conf()")
        self._pg_ctl(new, "promote", "-w", "-t", "60")
        self._primary = 1 - self._primary

    def rebuild_standby(self) -> None:
        """Stop the old primary if it still runs and rebuild it as the new primary's synchronous
        standby."""
        old = self.standby
        if self._running(old):
            self._pg_ctl(old, "stop", "-m", "immediate", "-w", "-t", "60")
        # The old primary's WAL may hold commits the standby never confirmed (their clients got
        # no answer): a fresh base backup discards them, as a rebuilt Patroni replica does.
        shutil.rmtree(old.data)
        self._attach_standby()

    def stop(self) -> None:
        """Stop both servers and remove their directories; safe to call again."""
        for server in self.servers:
            if server.data.exists() and self._running(server):
                with contextlib.suppress(RuntimeError):
                    self._pg_ctl(server, "stop", "-m", "immediate", "-w", "-t", "30")
        for server in self.servers:
            shutil.rmtree(server.root, ignore_errors=True)
        with contextlib.suppress(OSError):  # the caller's own files stay
            self.root.rmdir()

    def __enter__(self) -> PgPair:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ----------------------------------------------------------------------------
    def sql(self, server: PgServer, statement: str, database: str = "postgres") -> str:
        """One statement as the superuser over the server's socket; its rows, tab-separated."""
        out = self._run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(server.sock),
                "-p",
                str(server.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                statement,
            ],
            server,
        )
        return out.strip()

    def sync_standbys(self) -> int:
        """Standbys the primary waits for at commit now."""
        found = self.sql(
            self.primary, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
        )
        return int(found or 0)

    # -- internals -----------------------------------------------------------------------------
    def _attach_standby(self) -> None:
        """Base-backup the primary into the standby's directory, start it, and make the primary
        wait for it at every commit."""
        primary, standby = self.primary, self.standby
        self._owner_run(
            str(self.bin / "pg_basebackup"),
            "-D",
            str(standby.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-h",
            str(primary.sock),
            "-p",
            str(primary.port),
            "-U",
            SUPERUSER,
        )
        # The backup carries the primary's own setting; a standby ignores it until promoted.
        self.sql(primary, "ALTER SYSTEM SET synchronous_standby_names = '*'")
        self._start(standby)
        self.sql(primary, "SELECT pg_reload_conf()")
        self._wait_sync()

    def _wait_sync(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(RuntimeError):  # the primary still starting
                if self.sync_standbys() >= 1:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no synchronous standby after {timeout} s\n{self._log_tail(self.standby)}"
                )
            time.sleep(0.05)

    def _start(self, server: PgServer) -> None:
        options = (
            f"-p {server.port} -k {server.sock} -c listen_addresses='{self.listen}'"
            f" -c cluster_name={server.name}"
        )
        # After an immediate stop a backend may hold the directory for a moment: try again.
        for attempt in range(10):
            try:
                self._pg_ctl(
                    server, "start", "-w", "-t", "60", "-l", str(server.log), "-o", options
                )
                return
            except RuntimeError:
                if attempt == 9:
                    raise
                time.sleep(0.5)

    def _running(self, server: PgServer) -> bool:
        status = subprocess.run(
            [*self._as_owner, str(self.bin / "pg_ctl"), "-D", str(server.data), "status"],
            capture_output=True,
            timeout=30,
        )
        return status.returncode == 0

    def _pg_ctl(self, server: PgServer, *args: str) -> None:
        self._owner_run(str(self.bin / "pg_ctl"), "-D", str(server.data), *args, server=server)

    def _owner_run(self, *cmd: str, server: PgServer | None = None) -> None:
        self._run([*self._as_owner, *cmd], server)

    def _run(self, cmd: list[str], server: PgServer | None) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{cmd[-1]!r} timed out") from exc
        if out.returncode != 0:
            tail = self._log_tail(server) if server is not None else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}{out.stdout}\n{tail}")
        return out.stdout

    def _own(self, path: Path) -> None:
        if self._as_owner:
            shutil.chown(path, SUPERUSER, SUPERUSER)
        path.chmod(0o700)

    @staticmethod
    def _log_tail(server: PgServer, lines: int = 20) -> str:
        try:
            text = server.log.read_text(errors="replace")
        except OSError:
            return ""
        return f"{server.log}:\n" + "\n".join(text.splitlines()[-lines:])
