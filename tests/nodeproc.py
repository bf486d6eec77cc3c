"""Run a real mailfort node as a subprocess on loopback, provisioned through the real store."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailfort.auth.passwords import hash_password
from mailfort.store.sqlite import SqliteStore

_LISTENER = re.compile(
    r"^\s+(smtp|submission|submissions|imaps?|pop3s?|http)\s+([\d.]+):(\d+)\s", re.M
)

# Every node under test also listens for IMAP and POP3 (each on its own port, or a fixed one).
IMAP = True
POP3 = True

_HANDED_OUT: set[int] = set()


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, for nodes that are restarted on the same ports.

    Taken below the kernel's ephemeral range (32768 and up): a port from that range could be
    handed to one of the test's own client connections while the node is down, and the restart
    would then fail with "address already in use". A port is handed out once per test run:
    nodes set up together bind only later, so two calls could otherwise return the same port."""
    found: list[int] = []
    for port in random.sample(range(20000, 32000), 500):
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            _HANDED_OUT.update(found)
            return found
    raise RuntimeError("no free ports below the ephemeral range")


BASE_CONFIG = """\
hostname = "{hostname}"
node_name = "{name}"
workers = {workers}
data_dir = "{data_dir}"
local_domains = ["config-domain.test"]

[listen]
smtp = "{host}:{smtp}"
submission = "{host}:{submission}"
submissions = "{host}:{submissions}"
imap = "{imap_listen}"
imaps = "{imaps_listen}"
pop3 = "{pop3_listen}"
pop3s = "{pop3s_listen}"
http = "{http_listen}"

[verify]
{verify}

[queue]
lease_seconds = {lease_seconds}
poll_interval = 0.2

[delivery]
{delivery}
"""

# Remote delivery in test nodes asks a name server on loopback where nothing answers (port 9), never
# the machine's own resolver: remote recipients stay queued (temporary DNS failure) and no query
# leaves the machine. Tests of remote delivery pass their own `delivery` lines.
NO_DNS = 'dns_nameservers = ["127.0.0.1:9"]\ndns_timeout = 1.0\n'


@dataclass
class NodeProcess:
    root: Path
    name: str = "node1"
    extra_config: str = ""
    delivery: str = NO_DNS  # lines of the [delivery] table
    # Lines of the [verify] table: the checks of incoming mail are off unless a test of them
    # turns them on (with NO_DNS every message would wait out a DNS timeout, then a 451).
    verify: str = "enabled = false"
    fixed_ports: dict[str, int] = field(default_factory=dict)
    store_url: str = ""  # when set: a `[store] url = "..."` table (PostgreSQL cluster tests)
    lease_seconds: float = 5.0
    # Node processes (`serve --workers`): one unless a test runs several, whatever the cores.
    workers: int = 1
    http: bool = False  # serve the status web (`ports["http"]`); off unless a test needs it
    host: str = "127.0.0.1"  # the address every listener binds (a chaos node's own namespace)
    # Its name in EHLO, Received and Authentication-Results: two providers need two.
    hostname: str = "mx.mailfort.test"
    wrap: list[str] = field(default_factory=list)  # run under this, e.g. `ip netns exec NS`
    env: dict[str, str] = field(default_factory=dict)  # more environment (LD_PRELOAD of faketime)
    proc: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def config_path(self) -> Path:
        return self.root / "mailfort.toml"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "mailfort.sqlite3"

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        text = BASE_CONFIG.format(
            name=self.name,
            hostname=self.hostname,
            workers=self.workers,
            data_dir=self.data_dir,
            host=self.host,
            smtp=self.fixed_ports.get("smtp", 0),
            submission=self.fixed_ports.get("submission", 0),
            submissions=self.fixed_ports.get("submissions", 0),
            imap_listen=f"{self.host}:{self.fixed_ports.get('imap', 0)}" if IMAP else "",
            imaps_listen=f"{self.host}:{self.fixed_ports.get('imaps', 0)}" if IMAP else "",
            pop3_listen=f"{self.host}:{self.fixed_ports.get('pop3', 0)}" if POP3 else "",
            pop3s_listen=f"{self.host}:{self.fixed_ports.get('pop3s', 0)}" if POP3 else "",
            http_listen=f"{self.host}:{self.fixed_ports.get('http', 0)}" if self.http else "",
            delivery=self.delivery,
            verify=self.verify,
            lease_seconds=self.lease_seconds,
        )
        if self.store_url:
            text += f'\n[store]\nurl = "{self.store_url}"\n'
        self.config_path.write_text(text + self.extra_config)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mailfort", "--config", str(self.config_path), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def provision(
        self,
        *,
        domains: tuple[str, ...] = ("example.test",),
        users: dict[str, str] | None = None,
        aliases: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.write_config()

        async def run() -> None:
            store = SqliteStore(self.db_path)
            await store.open()
            try:
                existing = set(await store.list_domains())
                for domain in domains:
                    if domain not in existing:
                        await store.add_domain(domain)
                for address, password in (users or {}).items():
                    await store.add_account(address, hash_password(password))
                for source, target in aliases:
                    await store.add_alias(source, target)
            finally:
                await store.close()

        asyncio.run(run())

    def start(self, timeout: float = 30.0) -> NodeProcess:
        if not self.config_path.exists():
            self.write_config()
        out = self.root / f"{self.name}.out"
        out.write_text("")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        command = ["-m", "mailfort", "--config", str(self.config_path), "serve"]
        with open(out, "ab") as stdout, open(self.log_path, "ab") as stderr:
            self.proc = subprocess.Popen(
                [*self.wrap, sys.executable, *command],
                stdout=stdout,
                stderr=stderr,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = out.read_text()
            if "Stop with" in text:
                self.ports = {m[0]: int(m[2]) for m in _LISTENER.findall(text)}
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"node did not start (exit {self.proc.poll()}):\n{self.log_path.read_text()[-3000:]}"
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def spooled(self) -> list[int]:
        """Sizes of the spool files the node holds open. They have no name (server/spool.py),
        so they are found among its open files: /proc/<pid>/fd links into <data_dir>/spool."""
        assert self.proc is not None
        spool = str(self.data_dir.resolve() / "spool") + "/"
        sizes = []
        for fd in Path(f"/proc/{self.proc.pid}/fd").iterdir():
            try:
                if os.readlink(fd).startswith(spool):
                    sizes.append(os.stat(fd).st_size)
            except OSError:
                pass  # closed meanwhile
        return sizes

    def add_user(self, address: str, quota: int = 0) -> str:
        """A new account through the CLI (password "x"), with `quota` octets (0: none)."""
        args = ["user", "add", address, "--password-stdin"]
        if quota:
            args += ["--quota", str(quota)]
        added = self.cli(*args, stdin="x")
        assert added.returncode == 0, added.stderr
        return address

    def used_bytes(self, address: str) -> int:
        """What the account's mail takes of its quota, as `mailfort user list` says."""
        listed = self.cli("user", "list").stdout
        found = re.search(rf"^{re.escape(address)}\tused=(\d+)\t", listed, re.M)
        assert found is not None, listed
        return int(found[1])

    # -- looking at the store from the outside -----------------------------------------------
    def _query(self, coro_factory):  # type: ignore[no-untyped-def]
        async def run():  # type: ignore[no-untyped-def]
            store = SqliteStore(self.db_path)
            await store.open()
            try:
                return await coro_factory(store)
            finally:
                await store.close()

        return asyncio.run(run())

    def inbox(self, address: str, mailbox: str = "INBOX") -> list[bytes]:
        """Every message in the user's mailbox, as the bytes IMAP/POP3 will serve."""

        async def fetch(store: SqliteStore) -> list[bytes]:
            account = await store.get_account(address)
            assert account is not None, address
            messages = await store.list_messages(account.id, mailbox)
            found = []
            for m in messages:
                data = await store.message_bytes(account.id, mailbox, m.uid)
                assert data is not None
                found.append(data)
            return found

        return self._query(fetch)  # type: ignore[no-any-return]

    def queue(self) -> list:  # type: ignore[type-arg]
        return self._query(lambda store: store.queue_items())  # type: ignore[no-any-return]

    def queue_body(self, queue_id: str) -> bytes:
        body = self._query(lambda store: store.queue_body(queue_id))
        assert body is not None, queue_id
        return body  # type: ignore[no-any-return]
