"""``python -m massive_sim``: run the simulator in the foreground."""

from __future__ import annotations

from massive_sim.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
