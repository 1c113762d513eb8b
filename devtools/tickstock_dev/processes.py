"""Long-running child processes that are always stopped, whole, by whoever started them.

``make airflow`` and the browser test run ``airflow standalone`` (which forks a scheduler, a
DAG processor, an api-server with its workers, a triggerer, and a process per running task) plus
the intake bridge. Each child is started as the leader of a new session, so it and everything it
forks share one process group; stopping signals the *group*, so no grandchild outlives the
command. Airflow's task supervisor puts each task process into a group of its own, so the
descendants are also snapshotted before the stop and any survivor is killed at the end. A new
session also keeps the terminal's Ctrl-C away from the children: the parent
decides the stop order and waits for each group instead of racing a shutdown it did not start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import psutil

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.1


class StartupError(RuntimeError):
    """A child exited, or a readiness condition was not met before its deadline."""


def wait_for(condition: Callable[[], object], *, timeout: float, what: str, alive: Callable[[], None] | None = None):
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout`` passes.

    :param alive: called on every poll; raises when a process the condition depends on died, so
        a crash fails fast instead of waiting out the deadline
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


@dataclass
class Child:
    """One started process group: its leader, where its output goes, how it prefers to stop."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: Path | None = None
    _log_file: TextIO | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        """Return the end of the child's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ProcessGroup:
    """Start children in their own process groups; stop them all in reverse start order.

    Use as a context manager, or call :meth:`stop` from a ``finally``.
    """

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> Child:
        """Start ``argv`` as a new session with stdout+stderr appended to ``log_path``.

        :param stop_signal: what the child's leader handles as "shut down cleanly" (``airflow
            standalone`` only cleans up its components on SIGINT)
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("a")
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name, process, log_path, stop_signal, tuple(argv), dict(env), cwd, log_file)
        self.children.append(child)
        log.info("started %s (pid %d, log %s)", name, process.pid, log_path)
        return child

    def check_alive(self) -> None:
        """Raise :class:`StartupError` with the log tail of the first child that has exited."""
        for child in self.children:
            if not child.running:
                raise StartupError(
                    f"{child.name} exited with code {child.process.returncode}; "
                    f"last lines of {child.log_path}:\n{child.tail()}"
                )

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if not c.running), None)

    def get(self, name: str) -> Child:
        """Return the child started as ``name`` (KeyError naming the known ones otherwise)."""
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(f"no process named {name!r}; known: {', '.join(c.name for c in self.children)}")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the child's whole group *and* its descendants in other groups, then reap.

        What a crash of the component's machine or container does: nothing it forked survives
        (task processes live in groups of their own, so the group alone is not enough). The child
        stays in the list, at its position, so :meth:`restart` starts it again in the same place.
        """
        child = self.get(name)
        descendants = _descendants(child.process.pid)
        _signal_group(child.process.pid, sig)
        for process in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)
        if sig == signal.SIGKILL:
            child.process.wait()
            psutil.wait_procs(descendants)

    def stop_child(self, name: str, timeout: float = 30.0) -> None:
        """Stop one child cleanly (same escalation as :meth:`stop`); it stays listed, stopped."""
        _stop_group(self.get(name), timeout)

    def restart(self, name: str) -> Child:
        """Start a stopped (or killed) child again with its argv, environment and log file."""
        old = self.get(name)
        if old.running:
            raise RuntimeError(f"{name} is still running (pid {old.process.pid}); stop or kill it first")
        if old._log_file is not None:
            old._log_file.close()
        index = self.children.index(old)
        self.children.remove(old)
        child = self.start(name, old.argv, env=old.env, log_path=old.log_path, cwd=old.cwd, stop_signal=old.stop_signal)
        self.children.remove(child)
        self.children.insert(index, child)
        return child

    def stop(self, timeout: float = 30.0) -> list[str]:
        """Stop every child's whole process group, newest first; return the names stopped.

        Each group gets its clean-shutdown signal, then SIGTERM, then SIGKILL, each escalation
        after ``timeout / 3`` seconds, so a hung component cannot keep the command alive.
        """
        stopped = []
        while self.children:
            child = self.children.pop()
            _stop_group(child, timeout)
            if child._log_file is not None:
                child._log_file.close()
            stopped.append(child.name)
        return stopped

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop_group(child: Child, timeout: float) -> None:
    pgid = child.process.pid  # a session leader's pid is its process group id
    # Taken first: once a parent is gone its children are re-parented and no longer findable.
    descendants = _descendants(pgid)
    step = timeout / 3
    for sig in (child.stop_signal, signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(pgid):
            break
        _signal_group(pgid, sig)
        deadline = time.monotonic() + step
        while time.monotonic() < deadline:
            child.process.poll()  # reap the leader so it does not linger as a zombie group member
            if not _group_alive(pgid):
                break
            time.sleep(POLL_INTERVAL_S)
        else:
            log.warning("%s did not stop on %s within %.0fs", child.name, sig.name, step)
    try:
        child.process.wait(timeout=step)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) could not be reaped", child.name, child.process.pid)
    survivors = [p for p in descendants if _alive(p)]
    for process in survivors:
        log.warning("%s: killing leftover pid %d (%s)", child.name, process.pid, process.name())
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(survivors, timeout=step)
