"""A ``make airflow``-like launcher for test_stack.py: :func:`run_foreground` over real process groups.

``python signal_launcher.py WORKDIR N`` starts N components, each a process group of its own (a
leader plus a forked grandchild, as an Airflow component has). A component's clean shutdown is
slow on purpose: on SIGTERM it writes ``WORKDIR/stopping-<i>`` and exits only once the test creates
``WORKDIR/release``, so the test can send a second signal while the launcher is stopping it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tickstock_dev.processes import ProcessGroup, wait_for
from tickstock_dev.stack import run_foreground

COMPONENT = """
import os, pathlib, signal, subprocess, sys, time
workdir, index = pathlib.Path(sys.argv[1]), sys.argv[2]
subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(1)"])
def on_term(signum, frame):
    (workdir / f"stopping-{index}").write_text("")
    while not (workdir / "release").exists():
        time.sleep(0.05)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
(workdir / f"ready-{index}").write_text(str(os.getpid()))
while True:
    time.sleep(1)
"""


class Launcher:
    """Starts the components; stops them newest first through :class:`ProcessGroup`."""

    def __init__(self, workdir: Path, count: int) -> None:
        self.workdir = workdir
        self.count = count
        self.processes = ProcessGroup()
        self.stopped: list[str] = []

    def start(self) -> Path:
        for i in range(self.count):
            self.processes.start(
                f"component-{i}",
                [sys.executable, "-c", COMPONENT, str(self.workdir), str(i)],
                env=os.environ,
                log_path=self.workdir / f"component-{i}.log",
            )
        wait_for(
            lambda: all((self.workdir / f"ready-{i}").exists() for i in range(self.count)),
            timeout=120,
            what="the components to be ready",
            alive=self.processes.check_alive,
        )
        return self.workdir

    def stop(self) -> list[str]:
        stopped = self.processes.stop(timeout=300)
        self.stopped += stopped
        return stopped

    def first_exited(self) -> str | None:
        child = self.processes.first_exited()
        return None if child is None else child.name


if __name__ == "__main__":
    launcher = Launcher(Path(sys.argv[1]), int(sys.argv[2]))
    sys.exit(run_foreground(launcher, command="launcher", starting="starting", banner=lambda info: f"ready {info}"))
