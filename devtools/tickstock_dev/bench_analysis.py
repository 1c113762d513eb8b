"""What the note says about a missed target: where the time went and what would fix it.

Written against the measured figures of the run being rendered (shares, seconds, rates), so the
diagnosis moves with the numbers; the proposals are the changes the breakdowns and profiles point
at, not measured results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tickstock_dev.bench_report import Figure, Section


def _fig(section: Section, prefix: str) -> Figure | None:
    return next((f for f in section.figures if f.label.startswith(prefix)), None)


def _median(section: Section, prefix: str) -> float | None:
    f = _fig(section, prefix)
    return f.median if f else None


def _upsert(section: Section) -> list[str]:
    stage, merge = _median(section, "fresh: seconds in stage_bars"), _median(section, "fresh: seconds in merge_staged")
    lines = ["**Why the upsert misses, and what would fix it.**", ""]
    if stage and merge:
        share = 100 * stage / (stage + merge)
        lines.append(
            f"- Of a fresh upsert, {share:.0f} % is `stage_bars` and {100 - share:.0f} % `merge_staged`. The raw "
            "COPY writes each row once into one heap and one index; the project's path writes it into the batch's "
            "own heap (no index), reads it back once, then writes it into the target heap and primary key: two "
            "COPY-sized writes, so half of one COPY is the ceiling, reached only when the client-side encoding "
            "(the same in both) dominates."
        )
    lines += [
        "- Tried already: a shared staging table indexed by load key (1.4× a raw COPY for staging alone, "
        "replaced by per-batch tables in revision 0004); binary COPY (`FORMAT BINARY`, `set_types`) into staging, "
        "measured by hand on 302,400 rows: 94,000–109,000 rows/s against 116,000–119,000 for text.",
        "- Proposed next (not measured here): skip staging for a batch whose fetch and upsert run in one "
        "process (a one-task load), COPYing straight into the target when the probe finds nothing stored.",
    ]
    return lines


def _end_to_end(section: Section) -> list[str]:
    lines = ["**Why universe_load is not 20× faster here, and what would fix it.**", ""]
    for target in section.targets:
        tag = target.name.removeprefix("speed-up, ")
        base = _median(section, f"baseline (design doc), {tag}")
        run = _median(section, f"universe_load DagRun, {tag}")
        data = _median(section, f"universe_load data path (fetch and upsert TIs), {tag}")
        if base is None or run is None or data is None:
            continue
        lines.append(
            f"- {tag}: baseline {base:.0f} s; universe_load DagRun {run:.0f} s, of which the data path (all "
            f"fetch and upsert task instances) {data:.1f} s ({base / data:.2f}× the baseline's speed) and "
            f"{run - data:.0f} s fixed cost. 20× would need the whole DagRun under {base / 20:.1f} s."
        )
    lines += [
        "- The fixed cost does not grow with the universe: the first task pays `dags test`'s in-process "
        "Execution API start-up, `plan_load` builds the XNYS calendar from 1990 (`tickstock/calendar.nyse` is the "
        "top project frame of the profile), and every task instance costs Airflow's own bookkeeping (see "
        '"between tasks" above). The baseline\'s cost is per symbol, so the ratio improves with size.',
        "- Proposed fixes (not measured here):",
        "  1. Build the NYSE calendar only for the requested window (or ship precomputed sessions): "
        "`exchange_calendars` over 35+ years costs seconds of CPU in `plan_load`.",
        "  2. Fewer task instances for small loads: size batches so each timeframe maps to about one task per "
        "pool slot instead of fixed 50-symbol batches, and fold the upsert into the fetch task when both run on "
        "the same worker (halves the TIs). Measured for `nightly_refresh`, where requests are small: 250-symbol "
        "batches instead of 50 took a 1,000-symbol refresh from 65–70 s to 35 s with the same requests.",
        "  3. On a deployed Airflow the scheduler and workers are already running: the *process* column's "
        "extra start-up disappears, and with LocalExecutor/Celery the mapped fetches overlap instead of running "
        "one after another as under `dags test`.",
    ]
    return lines


def _rate(section: Section) -> list[str]:
    bound = _median(section, "API requests ÷ rate")
    run = _median(section, "universe_load DagRun")
    fetch = _median(section, "fetch_bars TIs, summed")
    rate = _median(section, "request rate inside fetch_bars")
    lines = ["**Why the load does not hide behind the API, and what would fix it.**", ""]
    if bound and run and fetch is not None and rate is not None:
        fetch_tis = run - fetch
        lines.append(
            f"- The bound is {bound:.0f} s; the DagRun took {run:.0f} s. Inside the fetch task instances the "
            f"requests ran at {rate:.0f} req/s, {100 * rate / 100:.0f} % of the 100 req/s budget (fetch_bars summed "
            f"{fetch:.0f} s: each 50-symbol TI needs 0.5 s of budget but also opens its hook and connections, "
            "parses and validates the bars and COPYs them to staging between and after its requests). The other "
            f"{fetch_tis:.0f} s are task instances that do not fetch (plan, upserts, check, finish) and Airflow's "
            "per-task work, which `dags test` runs *between* fetches instead of beside them. The profile shows "
            "the fetch path (`MassiveHook.get_bars`, the Redis budget's `acquire`) and Airflow's per-task "
            "machinery (structlog output, JSON-schema param validation, imports) sharing two cores."
        )
    lines += [
        "- Proposed fixes (not measured here): run the mapped fetches on an executor with several pool slots so "
        "upserts and bookkeeping overlap the rate-bound fetches (the Redis budget keeps the API at the limit); "
        "fewer, larger batches so fewer task instances sit between requests; start the first fetch before the "
        "plan's calendar work (compute windows once, cached).",
    ]
    return lines


def _memory(section: Section) -> list[str]:
    return [
        "**Why memory misses, and what would fix it.** The peak is the `dags test` process holding every task in "
        "turn; run the biggest task alone (`airflow tasks test`) to attribute it, and stream bars to COPY per "
        "symbol instead of holding a batch's bars in a list.",
    ]


def _sim(section: Section) -> list[str]:
    return [
        "**The simulator limited a load.** Warm more series before timing, or run it on its own core "
        "(`taskset`), before reading measurements 2-3.",
    ]


# ------------------------------------------------------------------------------------------------
# Issue 15's cluster targets (bench_cluster)
# ------------------------------------------------------------------------------------------------


def _budget_lines(section: Section, run_label: str, suffix: str = "") -> list[str]:
    """Where a rate-bound DagRun's time went, from the span figures every cluster section has."""
    first = _median(section, f"DagRun start → first API request{suffix}")
    tail = _median(section, f"last API request → DagRun end{suffix}")
    full = _median(section, f"10-s steps with the budget ≥ 90 % used{suffix}")
    idle = _median(section, f"summed seconds of task instances that do not fetch{suffix}")
    if first is None or tail is None or full is None:
        return []
    return [
        f"- {run_label}: {first:.1f} s passed before the first API request (plan task(s) and the hand-over of the "
        f"first fetch to a worker), {tail:.1f} s after the last one (upserts, check, finish); the budget was at "
        f"least 90 % used in {full:.0f} % of the 10-s steps. Task instances that do not fetch summed "
        f"{idle or 0:.0f} s. The per-task table and the request rate over time are in the notes above.",
    ]


def _floor_lines() -> list[str]:
    """The part of a rate-bound ratio no schedule can remove: the rate gate's headroom."""
    from tickstock.rate_budget import DEFAULT_HEADROOM

    floor = 1 / (1 - DEFAULT_HEADROOM)
    return [
        f"- Floor: the shared rate budget keeps {DEFAULT_HEADROOM:.0%} headroom below the simulator's limit "
        f"(so that send-time jitter never makes the API answer 429), so requests leave at most at "
        f"{100 * (1 - DEFAULT_HEADROOM):.0f}/s and DagRun ÷ (requests ÷ 100) cannot go below {floor:.2f}."
    ]


def _missed(section: Section, number: int) -> bool:
    return any(t.number == number and not t.passed for t in section.targets)


def _cluster_load(section: Section) -> list[str]:
    lines = ["**Why targets of this load miss, and what would fix them.**", ""]
    if _missed(section, 1):
        ratio = _median(section, "DagRun ÷ bound")
        lines += _budget_lines(section, f"Target 1 (DagRun ÷ bound {ratio or 0:.2f})")
        lines += _floor_lines()
        lines.append(
            "- What is left, in the order the figures point at: the time before the first request (the plan, "
            "then eight task processes starting at once on 2 cores; py-spy on a 1,000-symbol load put 0.9-2.7 s of "
            "each fetch before `execute`: the DAG file's parse 0.1-0.5 s, Airflow's jsonschema validation of the "
            "DAG's params 0.2-0.5 s, resolving its batch from the planner's XCom 0.1-0.6 s; the plugins-folder "
            "walk, 0.2-0.75 s more, is since done once per worker), 10-s steps below 90 % "
            "of the budget (both cores saturated, e.g. by the merges of the largest batches and by task start-up, "
            "so request threads wait for CPU, not for the API: a faster merge, target 6, shortens them), and after "
            "the last request one batch's upsert, `check_bar_counts` (one counting query per timeframe, run side "
            "by side, each one scan of the window's stored bars against the calendar's keys, then the job status)."
        )
    if _missed(section, 2):
        per = {f.label.removeprefix("requests per symbol: "): f.median for f in section.figures
               if f.label.startswith("requests per symbol: ")}  # fmt: skip
        lines.append(
            "- Target 2: requests per symbol by endpoint "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items()))
            + ". One aggs request per symbol per timeframe is 4.0; 4.06 leaves room for grouped daily "
            "(one request per session for the whole market instead of one day-bar request per symbol) plus "
            "ticker details only when stale: day bars by grouped daily would remove about one request per symbol."
        )
    if _missed(section, 7):
        lines.append(
            "- Target 7: the task id with the highest peak is listed in the notes; a fetch task holds its whole "
            "batch's bars before staging them. Stream each symbol's bars to COPY as they arrive, or cap the "
            "batch size by bars rather than symbols."
        )
    return lines


def _cluster_speedup(section: Section) -> list[str]:
    lines = ["**Why universe_load is not 5× the design document's loader, and what would fix it.**", ""]
    for target in section.targets:
        if target.passed:
            continue
        tag = target.name.rsplit(", ", 1)[-1]
        base = _median(section, f"design document's loader, {tag}")
        run = _median(section, f"universe_load DagRun, {tag}")
        bound = _median(section, f"universe_load requests ÷ 100/s (its bound), {tag}")
        if base is None or run is None:
            continue
        lines.append(
            f"- {tag}: the design document's loader took {base:.1f} s; 5× needs the DagRun under {base / 5:.1f} s, "
            f"it took {run:.1f} s, of which the API's own bound is {bound or 0:.1f} s. The rest is fixed cost per "
            "DagRun and per task instance (scheduling, Celery hand-over, task start-up), see the per-task table."
        )
        lines += _budget_lines(section, f"the last universe_load run ({tag})", f", {tag}")
    lines.append(
        "- What is left: the critical path of a small load is plan → one fetch wave (one task per timeframe) → "
        "upsert → check → finish, five task instances in a row, each a scheduler decision, a Celery hand-over "
        "and a task process start (see the queued → running column and the TIs' own seconds); fewer of them "
        "in a row (e.g. the check folded into the last upsert) or a cheaper start would shorten it."
    )
    return lines


def _cluster_job(section: Section) -> list[str]:
    done = _median(section, "PUBLISH → completed, 100 ms")
    created = _median(section, "PUBLISH → run created, 100 ms")
    started = _median(section, "PUBLISH → DagRun start, 100 ms")
    processing = _median(section, "PUBLISH → processing, 100 ms")
    lines = ["**Why the small job misses 12 s, and what would fix it.**", ""]
    if done is not None and created is not None and started is not None and processing is not None:
        lines.append(
            f"- Of the median {done:.1f} s: PUBLISH → universe_load run created {created:.1f} s (the bridge, the "
            "listener's deferred sensor waking in the triggerer, then `claim_jobs` and `trigger_universe_load`, "
            f"each a task instance); created → DagRun start {started - created:.1f} s (the scheduler); DagRun "
            f"start → `processing` {processing - started:.1f} s (`plan_load` on a worker); `processing` → "
            f"`completed` {done - processing:.1f} s (the load's task instances, per task id in the table above)."
        )
    lines.append(
        "- Fixes: report `queued` and trigger the run from fewer listener task instances (claim, trigger and "
        "acknowledge in one task after the sensor); a small load with one fetch and one upsert task per timeframe "
        "group rather than per batch; shorter scheduler/worker hand-over (see the queued → running column)."
    )
    return lines


def _cluster_refresh(section: Section) -> list[str]:
    ratio = _median(section, "DagRun ÷ bound")
    lines = [f"**Why nightly_refresh misses (DagRun ÷ bound {ratio or 0:.2f}), and what would fix it.**", ""]
    lines += _budget_lines(section, "the refresh")
    lines += _floor_lines()
    lines.append(
        "- What is left: planning (`plan_refresh` reads every symbol's stored extent before the first request), "
        "10-s steps below 90 % of the budget (CPU saturated by merges and task start-up) and the tail (the last "
        "batch's upsert, the check and the finish); see the per-task table."
    )
    return lines


ANALYSES = {
    "1": _cluster_load,
    "3": _cluster_speedup,
    "4": _cluster_job,
    "5": _cluster_refresh,
    "6": _upsert,
    "A2": _end_to_end,
    "A3": _rate,
    "A4": _memory,
    "A5": _sim,
}


def analyse(sections: list[Section]) -> dict[str, list[str]]:
    """Lines to add under each section that missed a target (sections that met theirs get none)."""
    out: dict[str, list[str]] = {}
    for section in sections:
        if any(not t.passed for t in section.targets) and section.key in ANALYSES:
            out[section.key] = ANALYSES[section.key](section)
    return out
