"""Sampling profiles for missed targets: py-spy attached to a running process, summarised as text.

py-spy rather than an in-process profiler because the work to explain is spread over threads
(the operator's fetch pool), child processes (``airflow dags test``) and the event loop of
nothing we own; py-spy samples all threads of a process (and its children) from outside, without
changing the code under measurement. The raw (collapsed-stack) output is folded here into the two
views a reader needs: where wall time is spent inclusively, and which frames are on top.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

# Frames from these path fragments are the ones a fix would touch; library frames below them are
# folded into the nearest one of ours in the "inclusive" view.
OURS = ("tickstock", "tickstock_airflow", "tickstock_dev", "dags/", "psycopg", "requests", "urllib3")


def py_spy() -> str | None:
    """Path of the py-spy binary next to this interpreter, or on PATH; None when unavailable."""
    local = Path(sys.executable).with_name("py-spy")
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


@dataclass
class Profile:
    """Collapsed stacks from py-spy: ``stack -> samples``."""

    stacks: Counter[str]
    rate: int

    @property
    def total(self) -> int:
        return sum(self.stacks.values())

    def top_self(self, n: int = 12) -> list[tuple[str, int]]:
        """Frames at the top of the stack (where the CPU/wait actually is)."""
        tops: Counter[str] = Counter()
        for stack, count in self.stacks.items():
            tops[_short(stack.rsplit(";", 1)[-1])] += count
        return tops.most_common(n)

    def top_inclusive(self, n: int = 15, only: tuple[str, ...] = OURS) -> list[tuple[str, int]]:
        """Functions by samples with them anywhere on the stack (each counted once per sample)."""
        incl: Counter[str] = Counter()
        for stack, count in self.stacks.items():
            seen = set()
            for frame in stack.split(";"):
                if only and not any(o in frame for o in only):
                    continue
                name = _short(frame)
                if name not in seen:
                    seen.add(name)
                    incl[name] += count
        return incl.most_common(n)

    def markdown(self, title: str, n: int = 12) -> str:
        """Two small tables (share of samples) for the benchmark note."""
        total = max(self.total, 1)
        lines = [
            f"**Profile: {title}** (py-spy, {self.total} on-CPU samples at {self.rate} Hz, all threads)",
            "",
            "| inclusive (project, driver and HTTP frames) | share |",
            "|---|---|",
            *[f"| `{name}` | {100 * c / total:.0f} % |" for name, c in self.top_inclusive(n)],
            "",
            "| top of stack | share |",
            "|---|---|",
            *[f"| `{name}` | {100 * c / total:.0f} % |" for name, c in self.top_self(n)],
        ]
        return "\n".join(lines)


def _short(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``module.func``: enough to find it, no machine paths."""
    frame = frame.strip()
    if " (" in frame and frame.endswith(")"):
        func, where = frame[:-1].split(" (", 1)
        path = where.rsplit(":", 1)[0]
        module = Path(path).stem
        parent = Path(path).parent.name
        return f"{parent}/{module}.{func}" if parent else f"{module}.{func}"
    return frame


def parse_raw(text: str, rate: int) -> Profile:
    stacks: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack.startswith("process "):  # --subprocesses prefixes "process PID:<command line>"
            stack = stack.split(";", 1)[1] if ";" in stack else ""
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return Profile(stacks, rate)


@contextlib.contextmanager
def record(pid: int, *, rate: int = 50, subprocesses: bool = False) -> Iterator[list[Profile]]:
    """Sample ``pid`` (and its children) until the block ends; the list receives the Profile.

    On-CPU samples only (no ``--idle``): the wall-clock split is measured separately (per-task
    durations, stage/merge timers); the profile says what burns the CPU inside them.

    Yields an empty list that holds one :class:`Profile` after the block (none when py-spy is not
    installed or cannot attach, e.g. without ptrace permission: profiling is best-effort).
    """
    out: list[Profile] = []
    binary = py_spy()
    if binary is None:
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        path = Path(tmp) / "profile.txt"
        argv = [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
        argv += ["--nonblocking", "-o", str(path)]
        if subprocesses:
            argv.append("--subprocesses")
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)
        try:
            yield out
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if path.exists():
                out.append(parse_raw(path.read_text(errors="replace"), rate))
