"""Benchmark of the engine on a synthetic cohort: ingest through the real CLI, then reads.

    python -m bench.engine [engine] [--patients 10000] [--seed 7] [--today 2030-01-07] [--dir DIR] [--keep]

1. generate the cohort (pathway.demo.cohort) as one JSONL file in date order, in worker processes;
2. `pathway record FILE --db sqlite:///DIR/bench.db` in a subprocess with PATHWAY_NOW pinned to
   the cohort's today: wall time, events/s and the subprocess's peak RSS; every event must be
   accepted (a non-zero exit status fails the benchmark);
3. in-process `Engine.open` on that database: `show` of 1,000 random patients, and the coordinator's
   worklist — `worklist(today, 7)`, the cohort's today being the day the clinic has recorded up
   to — 200 times, as p50/p95 milliseconds; also `worklist(today, 30)`, a month's look-ahead (a
   day after the cohort's today would count as overdue what nobody has recorded yet);
4. the database size (main file + WAL).

Progress goes to stderr; stdout gets one JSON object. Figures only: nothing here asserts a timing
(compare with "targets", the issue's goals at 100,000 patients).
The first word names the benchmark (`engine`, the default); others may be added to BENCHMARKS.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

#: Benchmarks by name: "module:function" taking the remaining arguments, returning an exit status.
BENCHMARKS: dict[str, str] = {
    "engine": "bench.engine:run",
    "reminders": "bench.reminders:run",
    "http": "bench.http:run",
}

#: The issue's targets, at 100,000 patients.
TARGETS = {
    "patients": 100_000,
    "ingest_events_per_s_min": 2000,
    "show_p95_ms_max": 20,
    "worklist_p95_ms_max": 100,
    "ingest_peak_rss_mb_max": 500,
}

DEFAULT_TODAY = date(2030, 1, 7)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (fraction 0.5 = median, 0.95 = p95)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def pinned_instant(today: date, zone: str) -> str:
    """Noon of `today` in the clinic's zone, as an ISO instant in UTC (for PATHWAY_NOW)."""
    from zoneinfo import ZoneInfo

    local = datetime.combine(today, clock_time(12, 0), tzinfo=ZoneInfo(zone))
    return local.astimezone(UTC).isoformat()


def maxrss_mb(ru_maxrss: int) -> float:
    """ru_maxrss is in kilobytes on Linux, in bytes on macOS."""
    return ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else ru_maxrss / 1024


def pathway_command() -> str:
    """The `pathway` script of the environment running this benchmark."""
    script = Path(sys.executable).parent / "pathway"
    if script.exists():
        return str(script)
    found = shutil.which("pathway")
    if found is None:
        raise SystemExit("bench: cannot find the `pathway` command (install the project: scripts/bench does)")
    return found


#: A tiny launcher between the benchmark and `pathway record`: a child's ru_maxrss starts from the
#: memory of the process that spawned it (Linux carries the pre-exec high-water mark over), so
#: spawning from the benchmark itself, which holds the cohort generator, would inflate the figure.
#: The launcher (python -S, ~10 MB) spawns the command and writes the child's peak RSS in KiB.
RSS_LAUNCHER = """
import os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


#: Event types that may arrive late in the late-entry mix (results and facts reported after the
#: fact; the referral and the MDT's own records arrive on time).
LATE_TYPES = frozenset({"biomarker", "restaging", "cycle_given", "cycle_delayed", "surveillance_visit",
                        "ablation_checked", "pve_performed", "booked"})


def late_mix(source: Path, target: Path, fraction: float, seed: int) -> int:
    """Copy the cohort file with `fraction` of the events of LATE_TYPES arriving 1-14 days after
    their clinical date (moved after the events dated up to then); returns how many were moved."""
    import orjson

    rng = random.Random(seed)
    keyed: list[tuple[date, int, bytes]] = []
    moved = 0
    with source.open("rb") as lines:
        for n, line in enumerate(lines):
            event = orjson.loads(line)
            arrives = date.fromisoformat(event["on"])
            if event["type"] in LATE_TYPES and rng.random() < fraction:
                arrives = date.fromordinal(arrives.toordinal() + rng.randint(1, 14))
                moved += 1
            keyed.append((arrives, n, line))
    keyed.sort(key=lambda item: (item[0], item[1]))
    with target.open("wb") as out:
        out.writelines(line for _, _, line in keyed)
    return moved


def ingest(jsonl: Path, url: str, now: str, out: Path) -> tuple[float, float, int]:
    """Run `pathway record` in a subprocess: (wall seconds, its peak RSS in MB, exit status); its
    stdout goes to `out`, its stderr (the summary) to `out` + ".err"."""
    env = {**os.environ, "PATHWAY_NOW": now}
    env.pop("PATHWAY_DB", None)
    env.pop("PATHWAY_POLICY", None)
    rss_file = out.with_suffix(".rss")
    command = [sys.executable, "-S", "-c", RSS_LAUNCHER, str(rss_file),
               pathway_command(), "record", str(jsonl), "--db", url]
    started = time.perf_counter()
    with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
        status = subprocess.run(command, env=env, stdout=stdout, stderr=stderr, check=False).returncode
    elapsed = time.perf_counter() - started
    peak = maxrss_mb(int(rss_file.read_text())) if rss_file.exists() else float("nan")
    return elapsed, peak, status


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine [engine]",
                                     description="Ingest a synthetic cohort with the CLI, then time show and "
                                                 "worklist. Prints one JSON object.")
    parser.add_argument("--patients", type=int, default=10_000, help="cohort size (default 10000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--today", type=date.fromisoformat, default=DEFAULT_TODAY,
                        help=f"the cohort's clinic-local today (default {DEFAULT_TODAY})")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="cohort generator processes")
    parser.add_argument("--shows", type=int, default=1000, help="show calls to time (default 1000)")
    parser.add_argument("--worklists", type=int, default=200, help="worklist calls to time (default 200)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the cohort file and database")
    parser.add_argument("--late", type=float, default=0.05,
                        help="then ingest again with this fraction of results arriving 1-14 days late "
                             "(default 0.05; 0: skip)")
    args = parser.parse_args(argv)
    if args.patients < 1:
        parser.error("--patients must be at least 1")

    from pathway.clock import fixed_clock, parse_instant
    from pathway.demo.cohort import write_interleaved
    from pathway.engine import Engine
    from states.policy import DEFAULT_POLICY

    policy = DEFAULT_POLICY
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pathway-bench-", dir=args.dir))
    try:
        jsonl = work / "cohort.jsonl"
        db_file = work / "bench.db"
        url = f"sqlite:///{db_file}"
        now = pinned_instant(args.today, policy.clinic_timezone)

        progress(f"generating {args.patients} patients (today {args.today}, seed {args.seed}, "
                 f"{args.workers} workers) into {jsonl}")
        started = time.perf_counter()
        events = write_interleaved(jsonl, args.patients, seed=args.seed, today=args.today, policy=policy,
                                   workers=args.workers, tmpdir=work)
        generate_s = time.perf_counter() - started
        progress(f"generated {events} events in {generate_s:.1f} s ({jsonl.stat().st_size / 1e6:.0f} MB)")

        progress(f"ingesting with `pathway record` (PATHWAY_NOW={now}) into {db_file}")
        out = work / "record.out"
        ingest_s, peak_rss, status = ingest(jsonl, url, now, out)
        if status != 0:
            lines = out.read_text(errors="replace").splitlines()[:30]
            progress(f"FAILED: `pathway record` exit status {status}; every event must be accepted. "
                     f"First lines of its output ({out}):")
            for line in lines:
                print(f"    {line}", file=sys.stderr)
            args.keep = True
            return 1
        progress(f"ingested in {ingest_s:.1f} s: {events / ingest_s:.0f} events/s, peak RSS {peak_rss:.0f} MB")

        rng = random.Random(args.seed)
        engine = Engine.open(url, policy=policy, clock=fixed_clock(parse_instant(now)))
        with engine:
            ids = [f"P{n:06d}" for n in range(1, args.patients + 1)]
            chosen = [rng.choice(ids) for _ in range(args.shows)]
            engine.show(chosen[0])  # warm-up: the first read opens the connection
            progress(f"timing show for {len(chosen)} random patients")
            show_ms = [timed(lambda p=patient: engine.show(p))[0] for patient in chosen]
            engine.worklist(args.today, 7)
            progress(f"timing worklist({args.today}, 7) and worklist({args.today}, 30), {args.worklists} times each")
            worklist_ms, rows, month_ms, month_rows = [], [], [], []
            for _ in range(args.worklists):
                ms, items = timed(lambda: engine.worklist(args.today, 7))
                worklist_ms.append(ms)
                rows.append(len(items))
                ms, items = timed(lambda: engine.worklist(args.today, 30))
                month_ms.append(ms)
                month_rows.append(len(items))

        late: dict[str, Any] = {}
        if args.late > 0:
            late_jsonl = work / "cohort-late.jsonl"
            moved = late_mix(jsonl, late_jsonl, args.late, args.seed)
            late_db = work / "bench-late.db"
            progress(f"ingesting again with {moved} events ({args.late:.0%} of results) arriving 1-14 days late")
            late_out = work / "record-late.out"
            late_s, late_rss, late_status = ingest(late_jsonl, f"sqlite:///{late_db}", now, late_out)
            summary = late_out.with_suffix(".err").read_text(errors="replace").strip().splitlines()
            counts = {status: int(n) for n, status in re.findall(r"(\d+) (accepted|refused|invalid|duplicate)",
                                                                  summary[-1] if summary else "")}
            late = {"late_fraction": args.late, "late_events": moved, "ingest_late_s": round(late_s, 2),
                    "ingest_late_events_per_s": round(events / late_s, 1),
                    "ingest_late_peak_rss_mb": round(late_rss, 1),
                    "late_mix_statuses": counts, "late_vs_in_order_rate": round(ingest_s / late_s, 3)}
            progress(f"ingested the late mix in {late_s:.1f} s: {events / late_s:.0f} events/s "
                     f"({ingest_s / late_s:.2f} of the in-order rate), statuses {counts}")

        db_bytes = sum(p.stat().st_size for p in (db_file, Path(f"{db_file}-wal")) if p.exists())
        result = {
            "patients": args.patients,
            "events": events,
            "today": args.today.isoformat(),
            "seed": args.seed,
            "generate_s": round(generate_s, 2),
            "ingest_s": round(ingest_s, 2),
            "ingest_events_per_s": round(events / ingest_s, 1),
            "ingest_peak_rss_mb": round(peak_rss, 1),
            "show_p50_ms": round(percentile(show_ms, 0.5), 3),
            "show_p95_ms": round(percentile(show_ms, 0.95), 3),
            "worklist_p50_ms": round(percentile(worklist_ms, 0.5), 3),
            "worklist_p95_ms": round(percentile(worklist_ms, 0.95), 3),
            "worklist_rows_mean": round(sum(rows) / len(rows), 1),
            "worklist_30d_p50_ms": round(percentile(month_ms, 0.5), 3),
            "worklist_30d_p95_ms": round(percentile(month_ms, 0.95), 3),
            "worklist_30d_rows_mean": round(sum(month_rows) / len(month_rows), 1),
            "db_size_mb": round(db_bytes / (1024 * 1024), 1),
            **late,
            "targets": TARGETS,
            "machine": {
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "sqlite": sqlite3.sqlite_version,
            },
        }
        print(json.dumps(result, indent=2))
        return 0
    finally:
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = "engine"
    if argv and not argv[0].startswith("-"):
        name = argv.pop(0)
        if name not in BENCHMARKS:
            print(f"bench: unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
    module, function = BENCHMARKS[name].split(":")
    # run as `python -m bench.engine`, this module is __main__: do not import it a second time
    namespace = globals() if module == "bench.engine" else vars(importlib.import_module(module))
    return namespace[function](argv)


if __name__ == "__main__":
    sys.exit(main())
