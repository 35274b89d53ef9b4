"""`besmart vee worker`: the validation worker in a process of its own, and its start beside
`besmart serve`.

Validation of what was written runs in its own process, not on a thread of the API's: a drain
is numpy and SQL for seconds under a bulk load, and on a thread it held the interpreter lock
the requests need (the served ingest's largest cost after the writes themselves).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from besmart_server.server.cli_db import open_database
from besmart_server.server.config import Settings

log = logging.getLogger("besmart.vee")

vee_app = typer.Typer(help="Validation (VEE): the worker that validates what was written.")


@vee_app.command("worker")
def worker(
    exit_with_parent: Annotated[
        bool,
        typer.Option(
            "--exit-with-parent",
            help="stop when the process that started this one is gone (besmart serve's own)",
        ),
    ] = False,
) -> None:
    """Validate the windows the writes queued (BESMART_VALIDATE_*), until SIGTERM or Ctrl-C.
    Several workers, on one host or many, share the queue: each claims its own rows."""
    from besmart_server.server.vee.worker import serve

    settings = Settings()
    if not settings.validate_after_write:
        typer.echo("validation after writes is off (BESMART_VALIDATE_AFTER_WRITE=0)", err=True)
        raise typer.Exit(2)
    parent = 0
    if exit_with_parent:
        parent = os.getppid()
        if _killed_with_parent():
            typer.echo("validation worker: killed by the kernel with its parent", err=True)
        if os.getppid() != parent:  # gone before the kernel was told
            raise typer.Exit(1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with open_database(settings, upgrade=False) as db:
        typer.echo(
            f"validation worker: the queue every {settings.validate_poll_seconds:g} s; "
            "Ctrl-C stops",
            err=True,
        )
        if not serve(db, settings, stop, parent=parent):
            os._exit(1)  # not waiting for the drain under way: its transaction rolls back


def _killed_with_parent() -> bool:
    """On Linux, have the kernel SIGKILL this process when the thread that started it ends
    (prctl PR_SET_PDEATHSIG): a worker then never outlives a server killed with SIGKILL, not
    even for the second its own look at its parent takes, and finishes no drain after it
    (it would still write to a database its server's operator, or a test, had moved on
    from). Whether the kernel took it."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return False
    return True


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


# A worker that exits on its own (a crash, the database gone for a while) is started again
# after this long, doubled up to the cap while it keeps failing.
RESTART_S = 1.0
RESTART_MAX_S = 30.0
# A stopping worker finishes the drain it started (one claim: seconds at most) before this.
STOP_TIMEOUT_S = 60.0


def restart_pauses(pause: float, ran_s: float) -> tuple[float, float]:
    """(the wait before starting a worker again, the pause for the exit after that), given
    the pause due now and how long the worker that exited ran: the pause doubles from
    RESTART_S up to RESTART_MAX_S while workers die young, and starts over after one that ran
    that long (a worker that failed once a day would otherwise wait the longest pause)."""
    wait = RESTART_S if ran_s >= RESTART_MAX_S else pause
    return wait, min(wait * 2, RESTART_MAX_S)


class Supervisor:
    """One `besmart vee worker` process, started again when it exits on its own."""

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name="vee-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        pause = RESTART_S
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    return
                # A session of its own: a Ctrl-C meant for the API reaches the worker only
                # through stop(), after the API has stopped writing.
                self._proc = subprocess.Popen(self._argv, start_new_session=True)
                proc = self._proc
            started = time.monotonic()
            code = proc.wait()
            if self._stop.is_set():
                return
            wait, pause = restart_pauses(pause, time.monotonic() - started)
            log.warning("the validation worker exited (%s): starting another in %g s", code, wait)
            self._stop.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(timeout=5)


@contextmanager
def beside_serve(settings: Settings) -> Iterator[None]:
    """`besmart serve`'s validation worker, while the API runs (none when validation after
    writes or validate_in_serve is off)."""
    if not (settings.validate_after_write and settings.validate_in_serve):
        yield
        return
    argv = [sys.executable, "-m", "besmart_server", "vee", "worker", "--exit-with-parent"]
    supervisor = Supervisor(argv)
    # Uvicorn stops on SIGTERM, puts back the handler it found and raises the signal again:
    # with the default handler the process would die there, before it stopped its worker.
    # This one unwinds to here instead (also from a SIGTERM before uvicorn took the signal).
    before = signal.signal(signal.SIGTERM, _raise_terminated)
    terminated = False
    supervisor.start()
    try:
        yield
    except _Terminated:
        terminated = True
    finally:
        supervisor.stop()
        signal.signal(signal.SIGTERM, before)
    if terminated:
        signal.raise_signal(signal.SIGTERM)  # the exit a process manager expects of a SIGTERM


class _Terminated(Exception):
    """SIGTERM, on its way out of uvicorn to `beside_serve`."""


def _raise_terminated(_sig: int, _frame: object) -> None:
    raise _Terminated


__all__ = ["Supervisor", "beside_serve", "vee_app"]
