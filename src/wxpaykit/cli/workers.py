"""Gateway worker processes, each listening on its own socket (``SO_REUSEPORT``).

uvicorn's ``--workers`` gives every worker the one listening socket the parent made.
Each new connection then goes to whichever worker's event loop wakes first, and a
worker accepts every connection that is waiting. A client opening a pool of
connections at once (WeChat Pay's notifier, a load balancer, a benchmark's ``wrk``)
lands mostly on one worker: on the benchmark machine, 21 and 11 connections of 32.
Notifications are handled where their connection is, so one worker is saturated
while the other waits, for the life of those connections.

With ``SO_REUSEPORT`` (Linux), each worker binds its own socket to the same port and
the kernel spreads new connections over the sockets by a hash of their addresses, so
each worker gets about its share whatever the timing. Elsewhere (macOS and Windows do
not balance reuse-port sockets), with one worker, or with port 0 (each worker would
get a port of its own), ``wxpaykit serve`` runs uvicorn's own supervisor.

The supervisor here does what uvicorn's does for the gateway: start the workers,
start a new one when one dies, stop them all (SIGTERM: a graceful uvicorn shutdown)
on SIGINT or SIGTERM, and give up when a worker cannot start at all.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from typing import Any

import structlog

__all__ = ["balanced_workers_supported", "bind_reuse_port", "run_balanced_workers"]

_log = structlog.get_logger("wxpaykit.cli.workers")
#: uvicorn's exit code for a worker that failed before serving (bad app, bad bind).
_STARTUP_FAILURE = 3
_BACKLOG = 2048  # uvicorn's default
_STOP_SECONDS = 30.0


def balanced_workers_supported(workers: int, port: int) -> bool:
    """True when :func:`run_balanced_workers` can serve: Linux, several workers, a fixed port."""
    return workers > 1 and port != 0 and sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other workers may bind too."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run_balanced_workers(workers: int, uvicorn_options: Mapping[str, Any]) -> int:
    """Serve with ``workers`` processes, each on its own reuse-port socket; the exit code.

    ``uvicorn_options`` are :class:`uvicorn.Config` keyword arguments (``host`` and
    ``port`` included); each worker builds its own config from them.
    """
    host, port = str(uvicorn_options["host"]), int(uvicorn_options["port"])
    # Bind once here, so a port in use fails now, readably, not in every worker.
    bind_reuse_port(host, port).close()
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_serve_one, args=(dict(uvicorn_options),))
        process.start()
        return process

    processes = [start() for _ in range(workers)]
    _log.info("gateway_workers_started", workers=workers, port=port, sockets="SO_REUSEPORT")
    exit_code = 0
    while not stop.wait(0.5):
        for index, process in enumerate(processes):
            if process.is_alive():
                continue
            if process.exitcode == _STARTUP_FAILURE:
                _log.error("gateway_worker_failed_to_start", pid=process.pid)
                exit_code = _STARTUP_FAILURE
                stop.set()
                break
            _log.warning("gateway_worker_died", pid=process.pid, exitcode=process.exitcode)
            processes[index] = start()
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(_STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()
    return exit_code


def _serve_one(uvicorn_options: dict[str, Any]) -> None:
    """One worker: its own socket, then uvicorn's server on it."""
    import uvicorn

    config = uvicorn.Config(**uvicorn_options)
    try:
        sock = bind_reuse_port(config.host, config.port)
    except OSError as exc:
        print(
            f"wxpaykit worker: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr
        )
        sys.exit(_STARTUP_FAILURE)
    uvicorn.Server(config).run(sockets=[sock])
