"""The demo: a fresh SQLite database with patients at every stage, and the coordinator's worklist.

    python -m pathway.demo [--db sqlite:///demo.db] [--patients 40] [--seed 7]

`today` is the engine clock's clinic-local date (pin it with PATHWAY_NOW, e.g.
PATHWAY_NOW=2027-03-01T09:00:00+00:00). The synthetic patients (`pathway.demo.cohort`) are recorded
through `Engine.record_many`, exactly as an import would be; the first ten are chosen so that
every non-terminal state holds a patient. The demo then prints `pathway worklist` for the same
database, a count of patients per state, and how to look further.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import Any

from pathway import cli, config
from pathway.clock import from_environment
from pathway.demo.cohort import dumps, generate_covering
from pathway.engine import Engine
from pathway.errors import PathwayError
from persistence import db
from states.policy import Policy
from states.vocabulary import State

DEFAULT_DB = "sqlite:///demo.db"
#: Referrals of the demo's patients are spread over the last three years: a clinic's active caseload
#: (the full cohort of `pathway.demo.cohort` spans five and a half years, mostly in follow-up).
DEMO_SPAN_DAYS = 3 * 365


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for any other URL, or an in-memory database)."""
    found = db.sqlite_file(url)
    return None if found is None else Path(found)


def demo_events(patients: int, *, seed: int, today: date, policy: Policy) -> list[dict[str, Any]]:
    """The demo cohort's events as one import in date order, as a clinic would send them
    (patients at every stage: pathway.demo.cohort.generate_covering)."""
    indexed = []
    for number, events in enumerate(
        generate_covering(patients, seed=seed, today=today, policy=policy, span_days=DEMO_SPAN_DAYS)
    ):
        indexed.extend((event["on"], number, position, event) for position, event in enumerate(events))
    indexed.sort(key=lambda item: item[:3])
    return [item[3] for item in indexed]


def fresh(path: Path, *, force: bool) -> list[Path]:
    """Delete the database file and its -wal/-shm companions; returns what was deleted."""
    companions = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    existing = [p for p in companions if p.exists()]
    if existing and "demo" not in path.name and not force:
        raise SystemExit(f"demo: {path} exists and is not named like a demo database; the demo deletes the "
                         "database it is given: pass --force to replace it, or choose another --db")
    for p in existing:
        p.unlink()
    return existing


def command(args: str) -> str:
    """How the user runs `pathway ...` from here: the venv's script if `pathway` is not on PATH."""
    exe = "pathway"
    if shutil.which("pathway") is None:
        script = Path(sys.executable).parent / "pathway"
        try:
            exe = str(script.relative_to(Path.cwd()))
        except ValueError:
            exe = str(script)
    pinned = os.environ.get("PATHWAY_NOW")
    prefix = f"PATHWAY_NOW={shlex.quote(pinned)} " if pinned else ""
    return f"{prefix}{exe} {args}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pathway.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=DEFAULT_DB, metavar="URL",
                        help=f"SQLite database to create afresh (default {DEFAULT_DB})")
    parser.add_argument("--patients", type=int, default=40, help="number of patients (default 40)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the cohort (default 7)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing database even if its name does not contain 'demo'")
    args = parser.parse_args(argv)
    if args.patients < 1:
        parser.error("--patients must be at least 1")
    url = args.db
    path = sqlite_file(url)
    if path is None:
        parser.error(f"--db must name a SQLite file (e.g. {DEFAULT_DB}): the demo deletes and recreates it")

    deleted = fresh(path, force=args.force)
    if deleted:
        print(f"Deleted the previous demo database: {', '.join(str(p) for p in deleted)}")
    try:
        policy = config.load_policy(None)
        engine = Engine.open(url, policy=policy, clock=from_environment())
    except PathwayError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 3
    with engine:
        today = engine.today()
        pinned = " (PATHWAY_NOW)" if os.environ.get("PATHWAY_NOW") else ""
        print(f"Creating {path} with {args.patients} synthetic patients; today is {today.isoformat()}"
              f"{pinned} in {policy.clinic_timezone}.")
        events = demo_events(args.patients, seed=args.seed, today=today, policy=policy)
        problems = [(event, result) for event, result in zip(events, engine.record_many(events, by="demo"),
                                                              strict=True) if not result.ok]
        if problems:  # the generator only writes events the domain accepts: this is a bug
            for event, result in problems[:20]:
                codes = ", ".join(r.code for r in result.reasons) or result.error
                print(f"NOT ACCEPTED: {dumps(event)} -> {result.status}: {codes}", file=sys.stderr)
            print(f"demo: {len(problems)} of {len(events)} events were not accepted", file=sys.stderr)
            return 1
        counts = engine.counts_by_state()
    print(f"Recorded {len(events)} events, all accepted.\n")
    sys.stdout.flush()

    cli.main(["worklist", "--db", url], standalone_mode=False)

    print("\nPatients per state:")
    for state in State:
        if counts.get(state):
            print(f"  {state:<26} {counts[state]:>4}")
    print(f"  {'total':<26} {sum(counts.values()):>4}")
    print("\nLook further:")
    print(f"  {command(f'show P000001 --db {url}')}")
    print(f"  {command(f'worklist --days 30 --db {url}')}")
    return 0

