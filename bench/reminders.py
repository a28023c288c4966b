"""Benchmark of reminder delivery (issue 3): the outbox dispatcher against one APScheduler job per reminder.

    python -m bench.engine reminders [--reminders 1000000] [--due 100000] [--naive 10000]
                                     [--per-patient 10] [--seed 7] [--today 2030-01-07] [--dir DIR] [--keep]

1. setup (timed, not a target): `Engine.open` creates and migrates a SQLite file; `--reminders`
   pending, queued reminders over `--reminders / --per-patient` patients are inserted directly
   (executemany, 100,000 rows a transaction). Rows look like the engine's own: the spec's kinds,
   keys "<patient>:<kind>:<n>", notify_at = 08:00 Europe/London on due_on - lead_days computed by
   states.plan.notify_at and stored through the repository's own conversion
   (`repository.sql.instant`), send_after = notify_at. The bench clock is noon (clinic time) of
   `--today`: `--due` reminders, chosen at random, were to be notified in the 14 days up to today
   (due), the others from tomorrow to 400 days ahead. Patient rows exist (foreign key) but hold a
   placeholder snapshot: nothing here reads them.
2. dispatcher start, in a fresh subprocess (its own peak RSS: VmHWM, see own_peak_rss_mb): the time from
   just before `Engine.open` until `start_scheduler([noop])` has returned (`start_return_s`) and
   until the scheduler's date job for the earliest reminder is armed (`start_s`, after the first
   sweep); the number of APScheduler jobs in its store. Its clock is pinned a day before the
   earliest notify_at, so nothing is due: this measures starting, not delivering.
3. throughput, in another fresh subprocess: `engine.dispatch_due(now)` at the bench clock with a
   no-op callable notifier delivers the `--due` reminders: reminders/s. Then an idle
   `dispatch_due` (nothing due), and `Outbox.release` alone (returning dead claims to the queue:
   both dispatch_due calls and the scheduler's first sweep include it). The parent then counts rows by delivery status: exactly `--due`
   must be `sent` and none notified after now; any difference is reported in "errors".
4. the naive design, in a third subprocess: a `BackgroundScheduler` with
   `SQLAlchemyJobStore(sqlite file)` and one date job per reminder for `--naive` reminders
   (run dates just past, `misfire_grace_time=None`, a no-op that counts its calls): the time to
   add them (scheduler started paused, so adding and firing do not overlap), then the time from
   `resume()` until every job has run (or `--naive-deadline`), its peak RSS and job-store size.
   "per_reminder" compares seconds per reminder: naive (add + fire, and fire alone) over ours
   (`dispatch_due`; our reminders are written by the event that plans them, not counted here).

Progress goes to stderr; stdout gets one JSON object. Figures only: nothing here asserts
(compare with "targets", the issue's goals at 1,000,000 reminders).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.engine import maxrss_mb, pinned_instant, progress

#: The issue's targets, at 1,000,000 pending reminders.
TARGETS = {
    "reminders": 1_000_000,
    "start_s_max": 2.0,
    "start_peak_rss_mb_max": 200,
    "scheduler_jobs_max": 2,
    "dispatch_reminders_per_s_min": 2000,
}

DEFAULT_TODAY = date(2030, 1, 7)
ROOT = Path(__file__).resolve().parents[1]
#: Reminders inserted per setup transaction.
SETUP_BATCH = 100_000
#: Due reminders were to be notified 0..DUE_SPAN_DAYS-1 days before today; the others 1..FUTURE_SPAN_DAYS after.
DUE_SPAN_DAYS = 14
FUTURE_SPAN_DAYS = 400

#: A plausible state and detail for each kind (what the engine would store with it).
KIND_STATE_DETAIL = {
    "mdt_due": ("referral", "first discussion at the HPB MDT"),
    "mdt_meeting": ("mdt_assessment", "HPB MDT meeting"),
    "chemo_cycle": ("neoadjuvant_chemo", "neoadjuvant FOLFOX cycle 3 of 6"),
    "restaging_scan": ("neoadjuvant_chemo", "restaging after pre-operative chemotherapy"),
    "surgery_due": ("resection", "liver surgery"),
    "pve_due": ("portal_vein_embolization", "portal vein embolization"),
    "flr_scan": ("portal_vein_embolization", "CT volumetry of the future liver remnant"),
    "ablation_due": ("ablation", "thermal ablation"),
    "ablation_scan": ("follow_up", "contrast CT/MRI after ablation"),
    "imaging_followup": ("follow_up", "imaging after a suspicious surveillance finding"),
    "surveillance": ("follow_up", "surveillance month 6: history, CEA, CT chest/abdomen/pelvis"),
}

REMINDER_COLUMNS = (
    "key, patient, kind, due_on, notify_at, status, detail, state, created_at, updated_at, closed_by, "
    "delivery, send_after, attempts, claim, sent_at, late_by_s, last_error"
)


# -- setup ---------------------------------------------------------------------------------------


def build_database(db_file: Path, *, reminders: int, due: int, per_patient: int, seed: int, now: datetime) -> dict[str, Any]:
    """Create, migrate and fill the database; returns what was built (earliest notify_at, ...)."""
    from pathway.clock import fixed_clock, local_today
    from pathway.engine import Engine
    from states.definition import DEFINITION
    from states.plan import notify_at
    from states.policy import DEFAULT_POLICY
    from states.vocabulary import ReminderKind

    policy = DEFAULT_POLICY
    engine = Engine.open(f"sqlite:///{db_file}", policy=policy, clock=fixed_clock(now))  # creates and migrates
    sql = engine.repository.sql  # the engine's own conversions of dates and instants for SQLite
    engine.close()

    kinds = [ReminderKind(k) for k in KIND_STATE_DETAIL]
    today = local_today(now, policy.zone)
    rng = random.Random(seed)
    due_indexes = set(rng.sample(range(reminders), due))
    patients = -(-reminders // per_patient)
    created = sql.instant(now - timedelta(days=30))

    conn = sqlite3.connect(db_file, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = OFF")  # setup only: the engine's connections use FULL
    conn.execute("PRAGMA cache_size = -524288")
    insert_patient = (
        "INSERT INTO patient (id, primary_tumour, state, version, snapshot, referred_on, latest_on, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    insert_reminder = f"INSERT INTO reminder ({REMINDER_COLUMNS}) VALUES ({', '.join(['?'] * 18)})"
    earliest: datetime | None = None
    due_built = 0
    index = 0
    patient_rows: list[tuple[Any, ...]] = []
    reminder_rows: list[tuple[Any, ...]] = []

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany(insert_patient, patient_rows)
        conn.executemany(insert_reminder, reminder_rows)
        conn.execute("COMMIT")
        patient_rows.clear()
        reminder_rows.clear()

    referred = sql.day(today - timedelta(days=120))
    latest = sql.day(today - timedelta(days=30))
    for p in range(1, patients + 1):
        patient = f"P{p:06d}"
        rows = []
        state = "follow_up"
        for j in range(min(per_patient, reminders - index)):
            kind = kinds[(p + j) % len(kinds)]
            state, detail = KIND_STATE_DETAIL[kind]
            if index in due_indexes:
                notify_day = today - timedelta(days=rng.randrange(DUE_SPAN_DAYS))
            else:
                notify_day = today + timedelta(days=1 + rng.randrange(FUTURE_SPAN_DAYS))
            # due_on is the notification day + the kind's lead; notify_at is the engine's own computation
            due_on = notify_day + timedelta(days=policy.lead_days[DEFINITION.reminders[kind].lead_group])
            at = notify_at(due_on, kind, policy)
            if index in due_indexes:
                due_built += at <= now
            earliest = at if earliest is None or at < earliest else earliest
            stored = sql.instant(at)
            rows.append((f"{patient}:{kind}:{j + 1}", patient, str(kind), sql.day(due_on), stored, "pending",
                         detail, state, created, created, None, "queued", stored, 0, None, None, None, None))
            index += 1
        rows.sort()
        reminder_rows.extend(rows)
        patient_rows.append((patient, "colorectal", state, 1, "{}", referred, latest, created, created))
        if len(reminder_rows) >= SETUP_BATCH:
            flush()
            progress(f"  {index} reminders inserted")
    if reminder_rows or patient_rows:
        flush()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"patients": patients, "earliest_notify_at": earliest, "due_built": due_built,
            "now_stored": sql.instant(now)}


def db_size_mb(db_file: Path) -> float:
    files = (db_file, Path(f"{db_file}-wal"))
    return round(sum(p.stat().st_size for p in files if p.exists()) / (1024 * 1024), 1)


# -- subprocesses ----------------------------------------------------------------------------------


def run_child(mode: str, *args: str) -> tuple[dict[str, Any], float, int, str]:
    """Run `child(mode, *args)` in a fresh interpreter: (its JSON, wall s, exit status, stderr)."""
    code = "import sys; from bench.reminders import child; sys.exit(child(sys.argv[1:]))"
    env = {k: v for k, v in os.environ.items() if k not in ("PATHWAY_DB", "PATHWAY_NOW", "PATHWAY_POLICY")}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, mode, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [threading.Thread(target=lambda s=s, c=c: c.append(s.read()), daemon=True)
               for s, c in ((proc.stdout, out_chunks), (proc.stderr, err_chunks))]
    for reader in readers:
        reader.start()
    proc.wait()
    wall = time.perf_counter() - started
    for reader in readers:
        reader.join()
    stdout, stderr = "".join(out_chunks), "".join(err_chunks)
    try:
        result = json.loads(stdout) if stdout.strip() else {}
    except json.JSONDecodeError:
        result = {"unparsed_stdout": stdout[-2000:]}
    return result, wall, proc.returncode, stderr


def own_peak_rss_mb() -> float:
    """This process's peak RSS. On Linux VmHWM, the high-water mark of its own address space:
    ru_maxrss (getrusage, os.wait4) starts from the forking parent's peak, which exec keeps."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child(argv: list[str]) -> int:
    """Entry point of the measured subprocesses: prints one JSON object."""
    mode, rest = argv[0], argv[1:]
    modes: dict[str, Callable[..., dict[str, Any]]] = {
        "start": _child_start, "dispatch": _child_dispatch, "naive": _child_naive,
    }
    result = modes[mode](*rest)
    result["peak_rss_mb"] = round(own_peak_rss_mb(), 1)
    print(json.dumps(result))
    return 0


def _child_start(url: str, instant: str) -> dict[str, Any]:
    from pathway.clock import fixed_clock, parse_instant
    from pathway.engine import Engine
    from states.policy import DEFAULT_POLICY

    calls = [0]

    def noop(delivery: Any) -> None:
        calls[0] += 1

    clock = fixed_clock(parse_instant(instant))
    started = time.perf_counter()
    engine = Engine.open(url, policy=DEFAULT_POLICY, clock=clock)
    opened = time.perf_counter()
    scheduler = engine.start_scheduler([noop])
    returned = time.perf_counter()
    deadline = returned + 60
    job = None
    while time.perf_counter() < deadline:
        job = scheduler.scheduler.get_job("next")
        if job is not None and job.next_run_time is not None:
            break
        time.sleep(0.0005)
    armed = time.perf_counter()
    jobs = scheduler.scheduler.get_jobs()
    out = {
        "open_s": round(opened - started, 3),
        "start_return_s": round(returned - started, 3),
        "start_s": round(armed - started, 3) if job is not None else None,
        "armed": job is not None,
        "armed_for": scheduler.armed_for.isoformat() if scheduler.armed_for else None,
        "next_run_in_s": round((job.next_run_time - datetime.now(UTC)).total_seconds(), 1) if job else None,
        "scheduler_jobs": len(jobs),
        "scheduler_job_ids": sorted(j.id for j in jobs),
        "delivered_during_start": calls[0],
        "scheduler_errors": scheduler.errors,
    }
    engine.stop_scheduler()
    engine.close()
    return out


def _child_dispatch(url: str, instant: str) -> dict[str, Any]:
    from pathway.clock import fixed_clock, parse_instant
    from pathway.engine import Engine
    from persistence.outbox import Outbox
    from states.policy import DEFAULT_POLICY

    calls = [0]

    def noop(delivery: Any) -> None:
        calls[0] += 1

    now = parse_instant(instant)
    engine = Engine.open(url, policy=DEFAULT_POLICY, clock=fixed_clock(now), notifiers=[noop])
    started = time.perf_counter()
    report = engine.dispatch_due(now)
    elapsed = time.perf_counter() - started
    idle_started = time.perf_counter()
    idle = engine.dispatch_due(now)
    idle_ms = (time.perf_counter() - idle_started) * 1000
    # what returning dead claims to the queue costs alone (run by a scheduler's first sweep, and by
    # dispatch_due when no scheduler holds the lock): part of both figures above
    release_started = time.perf_counter()
    Outbox(engine.repository).release(now)
    release_ms = (time.perf_counter() - release_started) * 1000
    engine.close()
    return {
        "dispatch_s": round(elapsed, 3),
        "report": report.as_dict(),
        "notifier_calls": calls[0],
        "reminders_per_s": round(report.sent / elapsed, 1) if elapsed > 0 else None,
        "idle_dispatch_ms": round(idle_ms, 2),
        "idle_claimed": idle.claimed,
        "release_orphans_ms": round(release_ms, 2),
    }


naive_calls = [0]
_naive_lock = threading.Lock()


def naive_fire(key: str) -> None:
    """The naive design's job: a no-op that counts its calls (referenced by the job store as text)."""
    with _naive_lock:
        naive_calls[0] += 1


def _child_naive(db_file: str, count: str, deadline: str) -> dict[str, Any]:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    n, limit = int(count), float(deadline)
    scheduler = BackgroundScheduler(
        timezone=UTC,
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{db_file}")},
        job_defaults={"misfire_grace_time": None},
    )
    scheduler.start(paused=True)  # adding is timed alone; the jobs fire on resume()
    run_date = datetime.now(UTC) - timedelta(seconds=1)
    started = time.perf_counter()
    for i in range(n):
        key = f"P{i // 10 + 1:06d}:chemo_cycle:{i % 10 + 1}"
        scheduler.add_job(naive_fire, "date", run_date=run_date, id=key, args=[key])
    add_s = time.perf_counter() - started
    size = db_size_mb(Path(db_file))
    stored = len(scheduler.get_jobs())
    started = time.perf_counter()
    scheduler.resume()
    stop_at = started + limit
    while naive_calls[0] < n and time.perf_counter() < stop_at:
        time.sleep(0.005)
    fire_s = time.perf_counter() - started
    fired = naive_calls[0]
    scheduler.shutdown(wait=True)
    return {
        "reminders": n,
        "add_time_s": round(add_s, 3),
        "jobs_stored": stored,
        "jobstore_db_mb": size,
        "fire_time_s": round(fire_s, 3),
        "fired": fired,
        "deadline_s": limit,
        "timed_out": fired < n,
    }


# -- the benchmark ---------------------------------------------------------------------------------


def count_deliveries(db_file: Path, now: str) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        by = dict(conn.execute("SELECT delivery, COUNT(*) FROM reminder GROUP BY delivery").fetchall())
        early = conn.execute("SELECT COUNT(*) FROM reminder WHERE delivery = 'sent' AND notify_at > ?",
                             (now,)).fetchone()[0]
        missed = conn.execute("SELECT COUNT(*) FROM reminder WHERE delivery != 'sent' AND notify_at <= ?",
                              (now,)).fetchone()[0]
    finally:
        conn.close()
    return {"by_delivery": by, "sent_not_yet_due": early, "due_not_sent": missed}


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine reminders",
                                     description="Time the reminder dispatcher's start and throughput on a "
                                                 "large outbox, against one APScheduler job per reminder. "
                                                 "Prints one JSON object.")
    parser.add_argument("--reminders", type=int, default=1_000_000, help="pending reminders (default 1000000)")
    parser.add_argument("--due", type=int, default=100_000, help="of which due at the bench clock (default 100000)")
    parser.add_argument("--naive", type=int, default=10_000,
                        help="reminders for the one-job-per-reminder design (default 10000; 0 skips it)")
    parser.add_argument("--naive-deadline", type=float, default=1800.0,
                        help="seconds to wait for the naive jobs to fire (default 1800)")
    parser.add_argument("--per-patient", type=int, default=10, help="reminders per patient (default 10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--today", type=date.fromisoformat, default=DEFAULT_TODAY,
                        help=f"clinic-local today; the bench clock is its noon (default {DEFAULT_TODAY})")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args(argv)
    if args.reminders < 1 or args.per_patient < 1:
        parser.error("--reminders and --per-patient must be at least 1")
    if not 0 <= args.due <= args.reminders:
        parser.error("--due must be between 0 and --reminders")
    if args.naive < 0:
        parser.error("--naive must not be negative")

    from states.policy import DEFAULT_POLICY

    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pathway-bench-reminders-", dir=args.dir))
    errors: list[str] = []
    try:
        db_file = work / "reminders.db"
        url = f"sqlite:///{db_file}"
        now_text = pinned_instant(args.today, DEFAULT_POLICY.clinic_timezone)
        now = datetime.fromisoformat(now_text)

        progress(f"setup: {args.reminders} reminders ({args.due} due at {now_text}) into {db_file}")
        started = time.perf_counter()
        built = build_database(db_file, reminders=args.reminders, due=args.due, per_patient=args.per_patient,
                               seed=args.seed, now=now)
        setup_s = time.perf_counter() - started
        size = db_size_mb(db_file)
        progress(f"setup done in {setup_s:.1f} s ({built['patients']} patients, {size} MB)")
        if built["due_built"] != args.due:
            errors.append(f"setup: {built['due_built']} reminders due at the bench clock, not {args.due}")

        earliest: datetime = built["earliest_notify_at"]
        start_clock = (earliest - timedelta(days=1)).isoformat()
        progress(f"dispatcher start in a fresh process (clock {start_clock}: nothing due)")
        start, start_wall, status, stderr = run_child("start", url, start_clock)
        if status != 0:
            errors.append(f"start subprocess exit status {status}: {stderr.strip()[-1500:]}")
        progress(f"started in {start.get('start_s')} s, peak RSS {start.get('peak_rss_mb')} MB, "
                 f"{start.get('scheduler_jobs')} scheduler jobs")

        progress(f"dispatch_due({now_text}) in a fresh process, no-op notifier")
        dispatch, dispatch_wall, status, stderr = run_child("dispatch", url, now_text)
        if status != 0:
            errors.append(f"dispatch subprocess exit status {status}: {stderr.strip()[-1500:]}")
        progress(f"dispatched {dispatch.get('report', {}).get('sent')} in {dispatch.get('dispatch_s')} s: "
                 f"{dispatch.get('reminders_per_s')} reminders/s, peak RSS {dispatch.get('peak_rss_mb')} MB")
        check = count_deliveries(db_file, built["now_stored"])
        sent = check["by_delivery"].get("sent", 0)
        if sent != args.due:
            errors.append(f"{sent} reminders sent, expected exactly {args.due}")
        if check["sent_not_yet_due"]:
            errors.append(f"{check['sent_not_yet_due']} reminders sent before their notify_at")
        if check["due_not_sent"]:
            errors.append(f"{check['due_not_sent']} due reminders not sent")
        if dispatch.get("notifier_calls") not in (None, args.due):
            errors.append(f"the notifier was called {dispatch.get('notifier_calls')} times for {args.due} due")

        naive: dict[str, Any] | None = None
        if args.naive:
            naive_db = work / "apscheduler.db"
            progress(f"naive design: {args.naive} APScheduler date jobs in SQLAlchemyJobStore({naive_db})")
            naive, naive_wall, status, stderr = run_child("naive", str(naive_db), str(args.naive),
                                                                     str(args.naive_deadline))
            if status != 0:
                errors.append(f"naive subprocess exit status {status}: {stderr.strip()[-1500:]}")
            if naive.get("timed_out"):
                errors.append(f"naive: only {naive.get('fired')} of {args.naive} jobs fired within "
                              f"{args.naive_deadline} s")
            naive["process_wall_s"] = round(naive_wall, 2)
            progress(f"naive: added in {naive.get('add_time_s')} s, fired in {naive.get('fire_time_s')} s, "
                     f"peak RSS {naive.get('peak_rss_mb')} MB")

        comparison: dict[str, Any] | None = None
        ours_s = dispatch.get("dispatch_s")
        if naive and ours_s and args.due and not naive.get("timed_out") and naive.get("add_time_s") is not None:
            ours_per = ours_s / args.due
            add_per = naive["add_time_s"] / args.naive
            fire_per = naive["fire_time_s"] / args.naive
            comparison = {
                "ours_dispatch_ms_per_reminder": round(ours_per * 1000, 4),
                "naive_add_ms_per_reminder": round(add_per * 1000, 4),
                "naive_fire_ms_per_reminder": round(fire_per * 1000, 4),
                "naive_add_plus_fire_over_ours_dispatch": round((add_per + fire_per) / ours_per, 1),
                "naive_fire_over_ours_dispatch": round(fire_per / ours_per, 1),
                "naive_add_s_extrapolated_to_reminders": round(add_per * args.reminders, 1),
                "note": f"seconds per reminder; ours: dispatch_due of {args.due} due among {args.reminders} "
                        f"pending (writing a reminder is part of the event that plans it, not timed here); "
                        f"naive: {args.naive} jobs in an otherwise empty job store",
            }

        result: dict[str, Any] = {
            "reminders": args.reminders,
            "patients": built["patients"],
            "due": args.due,
            "naive_reminders": args.naive,
            "bench_clock": now_text,
            "seed": args.seed,
            "setup_s": round(setup_s, 2),
            "db_size_mb": size,
            "start": {
                **start,
                "process_wall_s": round(start_wall, 2),
                "clock": start_clock,
                "clock_note": "pinned a day before the earliest notify_at: nothing due, the first sweep "
                              "delivers nothing; start_s = Engine.open until the date job is armed "
                              "(start_return_s: until start_scheduler returned)",
            },
            "dispatch": {
                **dispatch,
                "process_wall_s": round(dispatch_wall, 2),
                "clock": now_text,
                "rows_after": check,
            },
            "naive": naive,
            "per_reminder": comparison,
            "db_size_after_mb": db_size_mb(db_file),
            "targets": TARGETS,
            "machine": {
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "sqlite": sqlite3.sqlite_version,
            },
        }
        if errors:
            result["errors"] = errors
        print(json.dumps(result, indent=2))
        return 0
    finally:
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

