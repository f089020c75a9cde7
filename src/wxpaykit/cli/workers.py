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
on SIGINT or SIGTERM, and give up when a worker cannot start at all. Two things more:
a worker that keeps dying is restarted with a growing pause, and after
``_CRASH_LIMIT`` deaths in ``_CRASH_WINDOW_SECONDS`` the supervisor stops (exit code
1) instead of burning the machine in a crash loop; and each worker asks the kernel for
SIGTERM when its supervisor dies, so a killed supervisor leaves no worker serving on.
"""

from __future__ import annotations

import collections
import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import structlog

__all__ = ["balanced_workers_supported", "bind_reuse_port", "run_balanced_workers"]

_log = structlog.get_logger("wxpaykit.cli.workers")
#: uvicorn's exit code for a worker that failed before serving (bad app, bad bind).
_STARTUP_FAILURE = 3
_BACKLOG = 2048  # uvicorn's default
_STOP_SECONDS = 30.0
_CRASH_LIMIT = 5
_CRASH_WINDOW_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
    deaths: collections.deque[float] = collections.deque()
    while not stop.wait(0.5):
        for index, process in enumerate(processes):
            if process.is_alive():
                continue
            if process.exitcode == _STARTUP_FAILURE:
                _log.error("gateway_worker_failed_to_start", pid=process.pid)
                exit_code = _STARTUP_FAILURE
                stop.set()
                break
            now = time.monotonic()
            deaths.append(now)
            while deaths[0] < now - _CRASH_WINDOW_SECONDS:
                deaths.popleft()
            _log.warning("gateway_worker_died", pid=process.pid, exitcode=process.exitcode)
            if len(deaths) >= _CRASH_LIMIT:
                _log.error("gateway_workers_crash_loop", deaths=len(deaths))
                exit_code = 1
                stop.set()
                break
            # 0.5 s, 1 s, 2 s... while the deaths keep coming; the stop signal cuts it short.
            if stop.wait(0.25 * 2 ** len(deaths)):
                break
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

    _exit_with_supervisor()
    config = uvicorn.Config(**uvicorn_options)
    try:
        sock = bind_reuse_port(config.host, config.port)
    except OSError as exc:
        print(
            f"wxpaykit worker: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr
        )
        sys.exit(_STARTUP_FAILURE)
    uvicorn.Server(config).run(sockets=[sock])


def _exit_with_supervisor() -> None:
    """Ask the kernel for SIGTERM (uvicorn's graceful stop) when the supervisor dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux's libc: the supervisor stops us itself
        return
    if os.getppid() == 1:  # the supervisor died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
