"""Put the repository's source folders on the virtual environment's import path.

Airflow adds ``dags/`` and ``plugins/`` to ``sys.path`` by itself, but ``include/`` (plain domain
code) and ``devtools/`` (simulator, embedded services) are not. A ``.pth`` file in the venv makes
the same import paths (``import tickstock``, ``import tickstock_airflow``, ``import massive_sim``)
work in pytest, ``airflow dags test``, ``airflow standalone`` and plain ``python -m``. The docker
images get the same result through ``PYTHONPATH``.

Run with the venv's interpreter; it writes an absolute path, so it is re-run by ``make install``
in every clone and never committed.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

SOURCE_DIRS = ("include", "plugins", "devtools")


def main() -> None:
    root = Path(__file__).resolve().parents[2]
    site_packages = Path(sysconfig.get_paths()["purelib"])
    lines = [str(root / name) for name in SOURCE_DIRS]
    (site_packages / "tickstock_repo.pth").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
