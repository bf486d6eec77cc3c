"""The node a measurement drives: `mailfort serve` in a subprocess, from the outside.

It gets its own data directory and configuration (loopback listeners on ports the kernel picks,
one process), and accounts through the `mailfort` command, as an operator would make them. The
limits a provider sets against strangers (connections per address and network, connection rate)
are lifted: every load client comes from 127.0.0.1, and what is measured is the work, not the
defences against one address.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from mailfort.capacity import procstat, promtext

DOMAIN = "bench.test"
REMOTE_DOMAIN = "remote.test"
PASSWORD = "measure-password"
_LISTENER = re.compile(r"^\s+(smtp|imap|pop3|http)\s+([\d.]+):(\d+)\s", re.M)

CONFIG = """\
hostname = "mx.measure.test"
node_name = "measure"
workers = 1
data_dir = "{data_dir}"
local_domains = ["{domain}"]

[listen]
smtp = "127.0.0.1:0"
submission = ""
submissions = ""
imap = "127.0.0.1:0"
imaps = ""
pop3 = "127.0.0.1:0"
pop3s = ""
http = "127.0.0.1:0"

[limits]
max_connections = 100000
max_connections_per_ip = 100000
imap_max_connections_per_ip = 100000
pop3_max_connections_per_ip = 100000
max_sessions_per_account = 100000
max_network_share = 1.0
max_connection_rate_per_network = 0
auth_failures_per_ip = 1000000
auth_failures_per_network = 1000000
auth_failures_per_account = 1000000

[auth]
allow_plaintext_loopback = true

[verify]
enabled = false

[delivery]
# The remote MX is the measurement's sink, named by the transport: no DNS, no MTA-STS policy
# fetch, no DANE lookup and no TLS, whose costs depend on the destination, not on the node.
dns_nameservers = ["127.0.0.1:9"]
dns_timeout = 1.0
mta_sts = false
dane = false
tls = "none"
retry_base = 1.0
retry_max = 2.0
connect_timeout = 120.0
command_timeout = 120.0

[delivery.transports]
"{remote}" = "127.0.0.1:{sink_port}"
{store}"""


class NodeError(Exception):
    """The node could not be set up or did not start; the message says why, in one line."""


class BenchNode:
    def __init__(self, root: Path, *, store_url: str = "", sink_port: int = 9) -> None:
        self.root = root
        self.config_path = root / "mailfort.toml"
        self.log_path = root / "node.log"
        self.out_path = root / "node.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        store = f'\n[store]\nurl = "{store_url}"\n' if store_url else ""
        root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            CONFIG.format(
                data_dir=root / "data",
                domain=DOMAIN,
                remote=REMOTE_DOMAIN,
                sink_port=sink_port,
                store=store,
            )
        )

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mailfort", "--config", str(self.config_path), *args]

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            self.command(*args), input=stdin, capture_output=True, text=True, timeout=120
        )
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise NodeError(f"mailfort {' '.join(args)} failed: {last}")
        return done.stdout

    def add_users(self, addresses: list[str]) -> None:
        """Accounts through the CLI, several at once (each hashes its password: argon2)."""
        running = [
            (
                a,
                subprocess.Popen(
                    self.command("user", "add", a, "--password-stdin"),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
            for a in addresses
        ]
        for address, p in running:
            _, err = p.communicate(PASSWORD + "\n", timeout=120)
            if p.returncode:
                last = (err.strip().splitlines() or ["(no message)"])[-1]
                raise NodeError(f"mailfort user add {address} failed: {last}")

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(self.command("serve"), stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.out_path.read_text(errors="replace")
            if "Stop with" in text:
                self.ports = {m[0]: int(m[2]) for m in _LISTENER.findall(text)}
                missing = {"smtp", "imap", "pop3", "http"} - set(self.ports)
                if missing:
                    raise NodeError(f"node announced no {', '.join(sorted(missing))} listener")
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise NodeError(f"node did not start (exit {self.proc.poll()}): {tail[0][:300]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> procstat.CpuSample:
        return procstat.cpu_sample(self.pid)

    def rss(self) -> int:
        return procstat.rss_bytes(self.pid)

    def metrics(self) -> promtext.Scrape:
        return promtext.scrape(f"http://127.0.0.1:{self.ports['http']}/metrics")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
