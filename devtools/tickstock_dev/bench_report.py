"""Results of ``make bench``: samples, targets, the machine, and the Markdown note.

Every figure is kept as its raw samples (one per run) so the note can show min/median/max rather
than a single lucky or unlucky time; ratios are computed per run from paired samples taken in the
same run (same cache state, same background load) and summarised the same way.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One measured quantity: a sample per run.

    :param label: what was measured, e.g. ``"raw COPY"``
    :param unit: e.g. ``"rows/s"`` or ``"s"``
    :param samples: one value per run, in run order
    """

    label: str
    unit: str
    samples: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


@dataclass(frozen=True)
class Target:
    """A target of the issue and whether the measured figure meets it.

    :param name: short name for the summary table
    :param goal: the target as written in the issue, e.g. ``">= 0.5 of COPY"``
    :param measured: the figure that decides (usually a per-run ratio)
    :param passed: judged on the median; min/max are shown next to it
    :param number: the row of issue 15's target table it answers (None: a secondary check, kept
        in its section but not in the headline table)
    """

    name: str
    goal: str
    measured: Figure
    passed: bool
    number: int | None = None


@dataclass
class Section:
    """One measurement: its figures, derived ratios, targets and notes for the Markdown note."""

    key: str
    title: str
    method: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: str | None = None
    seconds: float = 0.0

    def add(self, label: str, unit: str, samples: list[float] | tuple[float, ...]) -> Figure:
        figure = Figure(label, unit, tuple(samples))
        self.figures.append(figure)
        return figure


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Per-run ratios of paired samples (same run, same machine state)."""
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def fmt(value: float, unit: str = "") -> str:
    """Human figures: thousands separators for big numbers, 2-3 significant decimals for small."""
    if unit == "%":
        return f"{value:.0f} %"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return text


def triple(figure: Figure) -> str:
    """``median (min-max)`` in one cell: the median decides, the range shows the noise."""
    if len(figure.samples) == 1:
        return f"{fmt(figure.median)} (1 run)"
    return f"{fmt(figure.median)} ({fmt(figure.min)}–{fmt(figure.max)})"


# ------------------------------------------------------------------------------------------------
# Machine description (generic: no host names, no paths)
# ------------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**30


def _load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


#: Iterations of :func:`cpu_probe`'s loop, and its best time (s) measured on one of this machine's cores.
CPU_PROBE_ITERATIONS = 10_000_000
CPU_PROBE_BEST_S = 1.2


def cpu_probe(*, repeats: int = 3) -> float:
    """Return the best of ``repeats`` timings (s) of a fixed pure-Python loop on one core.

    The rate-bound ratios divide by a fixed 100 requests/s, so on a 2-core machine they grow when
    the host lends fewer cycles: the same machine measured 1.2 s for this loop one hour and 1.9-2.9 s another.
    The note records the probe at the start and the end of a run. It sees only one core's
    pure-Python speed, not I/O or memory contention: runs at 1.14-1.29 s had upserts 2-3x slower
    than a run at 1.07 s, so compare runs by raw COPY rows/s and the warm-up time too.
    """
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        total = 0
        for n in range(CPU_PROBE_ITERATIONS):
            total += n * n % 7
        best = min(best, time.perf_counter() - start)
    return best


def machine_description(postgres_version: str) -> dict[str, str]:
    """What the numbers were measured on, without anything that identifies the host."""
    import airflow

    try:
        git = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        git = ""
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "RAM": f"{_memory_gib():.0f} GiB",
        "OS": f"{platform.system()} {platform.release().split('-')[0]} ({platform.machine()})",
        "Python": platform.python_version(),
        "PostgreSQL": postgres_version,
        "Airflow": airflow.__version__,
        "commit": git or "n/a",
    }


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------


#: Issue 15's target table: number -> (measurement, goal), the rows the note's summary always has.
ISSUE_TARGETS = {
    1: ("5,000 symbols × 1 year at 100 req/s, 100 ms: DagRun ÷ (requests ÷ 100)", "<= 1.2"),
    2: ("same load: API requests per symbol, fresh database", "<= 4.06"),
    3: ("100 symbols × 1 year, 100 ms: design document's loader ÷ universe_load DagRun", ">= 5×"),
    4: ("SCHG + VUG, 2 days, by Redis message, warm cluster: PUBLISH → completed, p50 of 10", "<= 12 s"),
    5: ("nightly_refresh of 5,000 symbols at 100 req/s: DagRun ÷ (requests ÷ 100)", "<= 1.2"),
    6: ("upsert (fresh and re-upsert) ÷ raw COPY, >= 1M rows", ">= 0.5"),
    7: ("peak RSS of any task in the 5,000-symbol load", "< 1 GiB"),
}


def _summary_rows(sections: list[Section]) -> list[str]:
    """The headline table: issue 15's numbered targets in their order, then nothing else."""
    rows = [
        "| # | target | goal | measured: median (min–max) | result | section |",
        "|---|---|---|---|---|---|",
    ]
    numbered = [(t.number, s.key, t) for s in sections for t in s.targets if t.number is not None]
    for number, (name, goal) in ISSUE_TARGETS.items():
        found = [(key, t) for n, key, t in numbered if n == number]
        if not found:
            rows.append(f"| {number} | {name} | {goal} | not measured in this run | – | – |")
        for key, target in found:
            verdict = "**pass**" if target.passed else "**MISS**"
            rows.append(f"| {number} | {target.name} | {target.goal} | {triple(target.measured)} | {verdict} | {key} |")
    return rows


def _secondary_rows(sections: list[Section]) -> list[str]:
    """Checks without a target number (the ``dags test`` measurements' own goals), if any ran."""
    rows = []
    for section in sections:
        for target in section.targets:
            if target.number is None:
                verdict = "pass" if target.passed else "miss"
                measured = triple(target.measured)
                rows.append(f"| {section.key} | {target.name} | {target.goal} | {measured} | {verdict} |")
    if not rows:
        return []
    head = ["Secondary checks (not issue 15's targets):", "", "| section | check | goal | measured | result |"]
    return [*head, "|---|---|---|---|---|", *rows, ""]


def section_order(section: Section) -> tuple[int, str]:
    """Target sections by their number (1, 3, 3b, 4 ...), the secondary ``dags test`` ones (A...) after."""
    digits = "".join(c for c in section.key if c.isdigit())
    return (int(digits) if section.key[:1].isdigit() and digits else 100, section.key)


def render_markdown(
    sections: list[Section],
    machine: dict[str, str],
    *,
    started: datetime,
    total_seconds: float,
    command: str,
    conditions: list[str],
    analysis: dict[str, list[str]] | None = None,
) -> str:
    """The whole note: how it was run, the machine, the summary, then one part per measurement."""
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on {started.astimezone(UTC):%Y-%m-%d %H:%M} UTC in "
        f"{total_seconds / 60:.1f} min. Do not edit by hand: rerun `make bench`.",
        "",
        "Every figure is *median (min–max)* over the runs shown. Ratios are computed per run from samples",
        "taken in the same run and then summarised, so a slow moment of the machine affects both sides.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in machine.items()],
        "",
    ]
    if conditions:
        lines += ["Conditions:", "", *[f"- {c}" for c in conditions], ""]
    lines += ["## Targets", "", *_summary_rows(sections), "", *_secondary_rows(sections)]
    for section in sorted(sections, key=section_order):
        lines += [f"## {section.key}. {section.title}", ""]
        if section.method:
            lines += [*section.method, ""]
        if section.figures:
            lines += [
                "| figure | unit | runs | min | median | max |",
                "|---|---|---|---|---|---|",
            ]
            for f in section.figures:
                lines.append(
                    f"| {f.label} | {f.unit} | {len(f.samples)} | {fmt(f.min)} | {fmt(f.median)} | {fmt(f.max)} |"
                )
            lines.append("")
        for target in section.targets:
            verdict = "pass" if target.passed else "MISS"
            lines.append(f"- Target {target.goal}: measured {triple(target.measured)} → **{verdict}**.")
        if section.targets:
            lines.append("")
        if section.notes:
            lines += [*section.notes, ""]
        if section.profile:
            lines += [section.profile, ""]
        if analysis and analysis.get(section.key):
            lines += [*analysis[section.key], ""]
        lines += [f"_Section time: {section.seconds:.0f} s._", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_console(sections: list[Section]) -> str:
    """The table ``make bench`` prints: every figure, then the targets."""
    out = []
    for section in sections:
        out.append(f"\n{section.key}. {section.title}  ({section.seconds:.0f} s)")
        width = max((len(f.label) for f in section.figures), default=10)
        for f in section.figures:
            out.append(
                f"  {f.label:<{width}}  {f.unit:<8} n={len(f.samples)}  "
                f"min {fmt(f.min):>10}  median {fmt(f.median):>10}  max {fmt(f.max):>10}"
            )
        for t in section.targets:
            out.append(f"  TARGET {t.goal}: {triple(t.measured)} -> {'pass' if t.passed else 'MISS'}")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# Raw results (so the note can be re-rendered without measuring again)
# ------------------------------------------------------------------------------------------------


def dump_results(path: Path, payload: dict[str, object], sections: list[Section]) -> None:
    """Write every sample, note and profile of a run as JSON (``--render-from`` reads it back)."""
    import dataclasses
    import json

    data = {**payload, "sections": [dataclasses.asdict(s) for s in sections]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))


def load_results(path: Path) -> tuple[dict[str, object], list[Section]]:
    import json

    data = json.loads(path.read_text())
    sections = []
    for raw in data.pop("sections"):
        figures = [Figure(f["label"], f["unit"], tuple(f["samples"])) for f in raw["figures"]]
        targets = [
            Target(
                t["name"],
                t["goal"],
                Figure(t["measured"]["label"], t["measured"]["unit"], tuple(t["measured"]["samples"])),
                t["passed"],
                t.get("number"),
            )
            for t in raw["targets"]
        ]
        sections.append(
            Section(
                raw["key"], raw["title"], raw["method"], figures, targets, raw["notes"], raw["profile"], raw["seconds"]
            )
        )
    return data, sections
