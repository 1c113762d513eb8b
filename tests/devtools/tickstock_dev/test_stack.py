"""The shutdown of ``make airflow`` / ``make cluster`` (:func:`tickstock_dev.stack.run_foreground`).

A terminal's Ctrl-C, ``kill -TERM -<pgid>`` or a supervisor's stop signals the launcher's whole
process group (``make`` and Python), often more than once. Before the fix, a second SIGTERM
that arrived while the launcher was stopping its components interrupted the clean-up and left
them running. Here a real launcher (signal_launcher.py) with real child process groups gets
SIGTERM twice, the second while it is provably still stopping (a component has received its own
stop signal and is waiting to be released); every process must be gone afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tickstock_dev.processes import wait_for

LAUNCHER = Path(__file__).with_name("signal_launcher.py")
COMPONENTS = 3


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_a_second_sigterm_during_shutdown_leaves_no_process_running(tmp_path):
    launcher = subprocess.Popen(
        [sys.executable, str(LAUNCHER), str(tmp_path), str(COMPONENTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as `make airflow` in a terminal has
    )
    descendants: list[psutil.Process] = []
    try:
        assert launcher.stdout is not None
        for line in launcher.stdout:
            if line.startswith("ready"):
                break
        else:
            pytest.fail(f"the launcher exited before it was ready (exit {launcher.wait()})")
        wait_for(
            lambda: len(psutil.Process(launcher.pid).children(recursive=True)) >= 2 * COMPONENTS,
            timeout=60,
            what="every component and its grandchild to be running",
        )
        descendants = psutil.Process(launcher.pid).children(recursive=True)

        os.killpg(launcher.pid, signal.SIGTERM)
        newest = tmp_path / f"stopping-{COMPONENTS - 1}"
        wait_for(newest.exists, timeout=60, what="the launcher to be stopping its newest component")
        os.killpg(launcher.pid, signal.SIGTERM)  # the second signal, mid clean-up
        (tmp_path / "release").write_text("")

        output = launcher.communicate(timeout=240)[0]
        assert launcher.returncode == 0, output
        assert f"Stopped: {', '.join(f'component-{i}' for i in reversed(range(COMPONENTS)))}." in output
        _, alive = psutil.wait_procs(descendants, timeout=60)
        assert alive == [], f"left running: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        for process in (
            [*_alive(descendants), psutil.Process(launcher.pid)] if launcher.poll() is None else _alive(descendants)
        ):
            process.kill()
