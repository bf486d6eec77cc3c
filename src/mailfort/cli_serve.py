"""`mailfort serve`: one node process, or with `--workers N` a supervisor of N node processes,
so that one node uses N cores.

A node is one asyncio loop, which runs on one core. The supervisor (the process `serve`
starts) runs N workers, each a whole node as `node.serve` runs it, and only supervises them:

- **Ports.** The supervisor binds every mail listener's port first, in the port's SO_REUSEPORT
  group and without listening (`server.listener.reserve_port`): port 0 becomes one port that
  every worker binds, and the port stays held while workers come and go. Each worker listens on
  a socket of its own (`share_ports`); the kernel spreads new connections over the listening
  ones by a hash of the client's address and port. A worker that dies takes only the
  connections waiting in its own accept queue with it; new ones go to the others at once.
- **Names.** Worker i is the cluster member `<node_name>-w<i>`: it heartbeats, holds leases and
  maildrop locks, and drains under that name, as any node does, so `mailfort cluster status`
  shows each. `mailfort node drain <node_name>` drains them all.
- **Status web.** Worker 0 alone serves the `http` listener: the pages come from the store,
  which every worker sees alike, and a scraper wants one `/metrics` per node. That `/metrics`
  covers every worker (prometheus-client's multiprocess mode, `metrics.MULTIPROCESS_DIR`).
  The other workers point notices at the same page (`status_page_url`).
- **Restarts.** A worker that dies (an exit status other than 0, or a signal) is started again
  after a pause that doubles from `FIRST_PAUSE` to `MAX_PAUSE`; a worker that ran `STABLE`
  seconds starts the count again. `MAX_CRASHES` deaths in a row, each sooner than `STABLE`
  after its start, is a crash loop: the supervisor drains the other workers and exits 1, for
  the service manager to see. A worker that exits 0 was drained (`mailfort node drain`) and
  stays down; when every worker is down, the supervisor exits 0.
- **Stop.** SIGTERM or SIGINT: every worker gets SIGTERM and drains as a node does
  (`[cluster] drain_seconds`); the supervisor waits for them and exits 0. A worker whose
  supervisor disappears (killed) drains itself.
- **SQLite** has one writer per database file, which every worker would queue on: more processes
  add no throughput, so more than one worker is refused (`WorkersUnsupported`) and the default is 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Final

from mailfort.cli_status import UsageError
from mailfort.config import Config, ListenConfig, parse_hostport
from mailfort.metrics import MULTIPROCESS_DIR
from mailfort.node import Listener, Node, describe_listeners, serve, status_page_url
from mailfort.server.listener import reserve_port, share_ports

log = logging.getLogger("mailfort.supervisor")

# What a worker process runs (`cli.run_worker`): a function a spawned process can import by
# name, which runs `serve_worker` under the command line's exit statuses.
WorkerMain = Callable[[Config, Connection], None]

MAIL_LISTENERS: Final = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
FIRST_PAUSE: Final = 0.5  # seconds before the first restart of a worker that died
MAX_PAUSE: Final = 30.0
STABLE: Final = 60.0  # a worker that ran this long and died is not part of a crash loop
MAX_CRASHES: Final = 5
# After the drain time, how long a worker may take to close its store before it is killed.
KILL_GRACE: Final = 30.0


class WorkersUnsupported(UsageError):
    """More than one worker asked of a store that one process serves best (exit status 2)."""


def worker_name(node_name: str, index: int) -> str:
    return f"{node_name}-w{index}"


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (taskset, a container's cpuset), not
    the machine's count, so that a node confined to two cores runs two workers."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(config: Config, requested: int | None) -> int:
    """How many workers `serve` runs: `--workers`, else `workers` in the config; 0 means one per
    CPU on PostgreSQL and 1 on SQLite."""
    wanted = config.workers if requested is None else requested
    if config.store.url.startswith(("postgresql://", "postgres://")):
        return wanted or available_cpus()
    if wanted > 1:
        raise WorkersUnsupported(
            f"--workers {wanted} needs PostgreSQL: SQLite has one writer, which more processes"
            " would only queue on; run one worker, or set [store] url to a PostgreSQL database"
        )
    return 1


def worker_config(config: Config, index: int, listen: ListenConfig) -> Config:
    """Worker `index`'s node: its own name, the supervisor's ports, the status web on worker 0."""
    status = config.status
    if index > 0:
        # Notices name the page worker 0 serves, as they would with one process.
        status = dataclasses.replace(status, public_url=status_page_url(config))
    return dataclasses.replace(
        config,
        node_name=worker_name(config.node_name, index),
        workers=1,
        listen=dataclasses.replace(listen, http=listen.http if index == 0 else ""),
        status=status,
    )


class PortReservations:
    """The mail listeners' ports, held by the supervisor while workers come and go."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []

    def reserve(self, listen: ListenConfig) -> ListenConfig:
        """`listen` with every mail listener's port 0 replaced by the port now held for it."""
        held: dict[str, str] = {}
        for name in MAIL_LISTENERS:
            address = parse_hostport(f"listen.{name}", getattr(listen, name))
            if address is None:
                continue
            host, port = address
            try:
                sock = reserve_port(host, port)
            except OSError as exc:
                self.close()
                # As the node says it: which of eight listeners it was.
                raise OSError(exc.errno, exc.strerror, f"[listen] {name} = {host}:{port}") from None
            self.sockets.append(sock)
            port = sock.getsockname()[1]
            held[name] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return dataclasses.replace(listen, **held)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


@dataclass
class _Worker:
    index: int
    name: str
    process: BaseProcess | None = None
    channel: Connection | None = None  # open while the worker runs; its end tells it we live
    started: float = 0.0
    crashes: int = 0  # deaths in a row, each within STABLE of its start
    listeners: list[Listener] = field(default_factory=list)

    def close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None


class Supervisor:
    """Runs `count` workers of the node `config` describes until told to stop (see module)."""

    def __init__(self, config: Config, count: int, worker_main: WorkerMain) -> None:
        self.config = config
        self._worker_main = worker_main
        self.workers = [_Worker(i, worker_name(config.node_name, i)) for i in range(count)]
        self._context = multiprocessing.get_context("spawn")  # the parent has threads: no fork
        self._reservations = PortReservations()
        self._listen = config.listen
        self._stopping = asyncio.Event()
        self._crash_loop = False
        self._metrics_dir = config.data_dir / "metrics"

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        self._listen = self._reservations.reserve(self.config.listen)
        try:
            self._prepare()
            started = await asyncio.gather(*(self._start(w) for w in self.workers))
            if not all(started):
                if self._stopping.is_set():
                    return 0
                # A worker that cannot start says why on stderr; the others stop with it.
                self.stop()
                await asyncio.gather(*(self._keep(w) for w in self.workers))
                return 1
            print(
                describe_listeners(
                    self.config, self.workers[0].listeners, workers=[w.name for w in self.workers]
                ),
                flush=True,
            )
            await asyncio.gather(*(self._keep(w) for w in self.workers))
        finally:
            self._reservations.close()
            for worker in self.workers:
                worker.close_channel()
        return 1 if self._crash_loop else 0

    def stop(self) -> None:
        """Drain every worker (SIGTERM); kill those still there after the drain time."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        print(f"mailfort: stopping {len(self.workers)} workers", file=sys.stderr, flush=True)
        log.info("event=workers_stopping workers=%d", len(self.workers))
        for worker in self.workers:
            if worker.process is not None and worker.process.is_alive():
                worker.process.terminate()
        deadline = self.config.cluster.drain_seconds + KILL_GRACE
        asyncio.get_running_loop().call_later(deadline, self._kill_stragglers)

    def _kill_stragglers(self) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.is_alive():
                log.error("event=worker_killed worker=%s reason=drain_timeout", worker.name)
                worker.process.kill()

    def _prepare(self) -> None:
        """What workers would otherwise race for: the self-signed certificate, and an empty
        directory for the metrics of this run (prometheus-client's multiprocess mode)."""
        if not self.config.tls.cert:
            from mailfort.server.tls import ensure_self_signed

            ensure_self_signed(self.config.data_dir / "tls", self.config.hostname)
        shutil.rmtree(self._metrics_dir, ignore_errors=True)
        self._metrics_dir.mkdir(parents=True)
        # Inherited by the workers, which read it when they import prometheus-client.
        os.environ[MULTIPROCESS_DIR] = str(self._metrics_dir)

    async def _start(self, worker: _Worker) -> bool:
        """Start `worker`; True once it serves, False if it ended before."""
        ours, theirs = self._context.Pipe()
        config = worker_config(self.config, worker.index, self._listen)
        process = self._context.Process(
            target=self._worker_main, args=(config, theirs), name=worker.name, daemon=False
        )
        process.start()
        theirs.close()
        worker.process, worker.channel, worker.started = process, ours, time.monotonic()
        log.info("event=worker_started worker=%s pid=%s", worker.name, process.pid)
        if self._stopping.is_set():
            process.terminate()
        await _readable(ours.fileno())
        try:
            worker.listeners = ours.recv()
        except (EOFError, OSError):
            return False
        return True

    async def _keep(self, worker: _Worker) -> None:
        """Wait for `worker` to end and start it again while that is the policy (see module)."""
        while worker.process is not None:
            process = worker.process
            await _readable(process.sentinel)
            process.join()
            worker.close_channel()
            self._forget_metrics(process)
            code = process.exitcode
            if self._stopping.is_set():
                log.info("event=worker_stopped worker=%s exit=%s", worker.name, code)
                return
            if code == 0:
                log.warning("event=worker_drained worker=%s restart=no", worker.name)
                return
            quick = time.monotonic() - worker.started < STABLE
            worker.crashes = worker.crashes + 1 if quick else 1
            if worker.crashes >= MAX_CRASHES:
                log.error(
                    "event=workers_crash_loop worker=%s exit=%s crashes=%d within=%gs",
                    worker.name,
                    code,
                    worker.crashes,
                    STABLE,
                )
                self._crash_loop = True
                self.stop()
                return
            pause = min(MAX_PAUSE, FIRST_PAUSE * 2 ** (worker.crashes - 1))
            log.warning(
                "event=worker_died worker=%s pid=%s exit=%s restart_in=%gs",
                worker.name,
                process.pid,
                code,
                pause,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            if self._stopping.is_set():
                return
            await self._start(worker)

    def _forget_metrics(self, process: BaseProcess) -> None:
        """A dead worker's gauges leave the sums; its counters stay in the totals."""
        if process.pid is None:
            return
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process.pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]


async def _readable(fd: int) -> None:
    """Wait until `fd` can be read (data, or the other end closed)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def serve_worker(config: Config, channel: Connection) -> int:
    """A worker process's node on the supervisor's ports, until drained or told to stop; it
    tells the supervisor its listeners on `channel` once it serves."""
    share_ports()

    def announce(node: Node) -> None:
        channel.send(list(node.listeners))
        loop = asyncio.get_running_loop()

        def orphaned() -> None:
            # The supervisor is gone (its end of the channel closed): nobody will stop or
            # restart this worker, so it leaves the cluster as a drained node does.
            loop.remove_reader(channel.fileno())
            log.warning("event=supervisor_gone worker=%s", node.config.node_name)
            node.stop_requested.set()

        loop.add_reader(channel.fileno(), orphaned)

    return await serve(config, announce)
