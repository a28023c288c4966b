"""The synthetic cohort (pathway.demo.cohort) and the demo (pathway.demo).

The generator writes only events the domain accepts: recorded through the engine on a fresh
database with the clock pinned to the cohort's `today`, every line is accepted, and the patients
end up spread over the pathway's states.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from pathway import Engine, ManualClock
from pathway.demo.cohort import (
    ROUTES,
    generate,
    generate_covering,
    generate_patient,
    walk_patient,
    write_interleaved,
)
from states.events import parse_event
from states.pathway import replay
from states.policy import DEFAULT_POLICY
from states.vocabulary import NON_TERMINAL_STATES, Status
from tests.conftest import PINNED

ENVELOPE = {"patient", "type", "on", "data", "note", "override"}


@pytest.fixture
def today(engine: Engine) -> date:
    return engine.today()


@pytest.mark.slow
def test_every_generated_event_is_accepted_by_the_engine_and_patients_reach_many_states(
    engine: Engine, today: date
) -> None:
    """A few hundred generated patients, recorded in date order, are accepted line by line."""
    events = sorted(
        ((event["on"], number, position, event)
         for number, patient in enumerate(generate(250, seed=11, today=today))
         for position, event in enumerate(patient)),
        key=lambda item: item[:3],
    )
    results = list(engine.record_many(item[3] for item in events))
    assert len(results) == len(events)
    refused = [(item[3], r.as_dict()) for item, r in zip(events, results, strict=True)
               if r.status is not Status.accepted]
    assert refused == []
    counts = engine.counts_by_state()
    assert sum(counts.values()) == 250
    assert len(counts) >= 10, counts


def test_the_cohort_is_deterministic_for_a_seed(today: date) -> None:
    first = list(generate(30, seed=3, today=today))
    again = list(generate(30, seed=3, today=today))
    other = list(generate(30, seed=4, today=today))
    assert first == again
    assert first != other


def test_a_patient_depends_only_on_its_own_random_stream(today: date) -> None:
    """Patient 7 is the same whether generated alone or after six others."""
    alone = list(generate(1, seed=5, today=today, first=7))
    in_cohort = list(generate(7, seed=5, today=today))[-1]
    assert alone == [in_cohort]


def test_events_follow_the_contract_and_never_fall_after_today(today: date) -> None:
    for number, patient in enumerate(generate(120, seed=2, today=today), start=1):
        assert patient[0]["type"] == "referral"
        dates = [event["on"] for event in patient]
        assert dates == sorted(dates)
        assert dates[-1] <= today.isoformat()
        for event in patient:
            assert set(event) <= ENVELOPE
            assert event["patient"] == f"P{number:06d}"
            assert re.fullmatch(r"P\d{6}", event["patient"])
            parse_event(event)  # raises if the event does not fit the contract


def test_every_route_can_be_generated_and_replays_to_a_state(today: date) -> None:
    for route in ROUTES:
        for attempt in range(5):
            events, state = walk_patient(1, random.Random(f"{route}:{attempt}"), today, route=route)
            snapshot = replay([parse_event(e) for e in events], DEFAULT_POLICY)
            assert snapshot is not None and snapshot.state is state


def test_overrides_are_deliberate_and_carry_a_reason(today: date) -> None:
    """Only the realistic overrides the generator means to make appear, each with a reason."""
    allowed = {"CYCLE_TOO_EARLY", "HIGH_OPERATIVE_RISK", "LOW_VOLUME_CENTRE", "ABLATION_LESION_SIZE"}
    seen: Counter[str] = Counter()
    total = 0
    for patient in generate(300, seed=9, today=today):
        total += len(patient)
        for event in patient:
            for override in event.get("override", ()):
                assert override["rule"] in allowed and override["reason"].strip()
                seen[override["rule"]] += 1
    assert sum(seen.values()) < total * 0.01


def test_a_given_route_and_referral_date_are_respected(today: date) -> None:
    referred = date(today.year - 1, 3, 2)
    events = generate_patient(4, random.Random(1), today, route="ablation", referred_on=referred)
    assert events[0] == {"patient": "P000004", "type": "referral", "on": referred.isoformat(),
                         "data": events[0]["data"]}
    assert events[0]["data"]["primary"] == "colorectal"


def test_the_covering_cohort_holds_every_non_terminal_state(today: date) -> None:
    states = set()
    cohort = list(generate_covering(40, seed=7, today=today))
    assert len(cohort) == 40
    for patient in cohort:
        snapshot = replay([parse_event(e) for e in patient], DEFAULT_POLICY)
        assert snapshot is not None
        states.add(snapshot.state)
    assert set(NON_TERMINAL_STATES) <= states


def test_interleaved_file_is_in_date_order_and_keeps_each_patients_order(tmp_path: Path, today: date) -> None:
    out = tmp_path / "cohort.jsonl"
    count = write_interleaved(out, 60, seed=3, today=today)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == count
    assert [e["on"] for e in lines] == sorted(e["on"] for e in lines)
    by_patient: dict[str, list[dict]] = {}
    for event in lines:
        by_patient.setdefault(event["patient"], []).append(event)
    expected = {p[0]["patient"]: p for p in generate(60, seed=3, today=today)}
    assert by_patient == expected
    # within one day: patient order, then each patient's own order (a stable sort)
    keys = [(e["on"], e["patient"]) for e in lines]
    assert keys == sorted(keys)
    parallel = tmp_path / "parallel.jsonl"
    assert write_interleaved(parallel, 60, seed=3, today=today, workers=2) == count
    assert parallel.read_bytes() == out.read_bytes()


# -- the demo --------------------------------------------------------------------------------


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> str:
    instant = PINNED.isoformat()
    monkeypatch.setenv("PATHWAY_NOW", instant)
    monkeypatch.delenv("PATHWAY_POLICY", raising=False)
    return instant


@pytest.mark.slow
def test_demo_records_patients_at_every_stage_and_prints_the_worklist(
    tmp_path: Path, pinned: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathway import demo

    db = tmp_path / "demo.db"
    db.write_text("stale")
    url = f"sqlite:///{db}"
    assert demo.main(["--db", url, "--patients", "40"]) == 0
    out = capsys.readouterr().out
    assert "Deleted the previous demo database" in out
    assert "Worklist for 2033-01-01 (+7 days)" in out
    assert f"show P000001 --db {url}" in out and f"worklist --days 30 --db {url}" in out
    with Engine.open(url, clock=ManualClock(PINNED)) as engine:
        counts = engine.counts_by_state()
    assert sum(counts.values()) == 40
    assert {str(s) for s in NON_TERMINAL_STATES} <= set(counts)
    for state in NON_TERMINAL_STATES:
        assert re.search(rf"^\s+{state}\s+{counts[state]}$", out, re.MULTILINE)


def test_demo_refuses_to_delete_a_database_not_named_like_a_demo(tmp_path: Path, pinned: str) -> None:
    from pathway import demo

    db = tmp_path / "pathway.db"
    db.write_text("precious")
    with pytest.raises(SystemExit, match="--force"):
        demo.main(["--db", f"sqlite:///{db}"])
    assert db.read_text() == "precious"


def test_demo_needs_a_sqlite_file(pinned: str) -> None:
    from pathway import demo

    with pytest.raises(SystemExit):
        demo.main(["--db", "postgresql://localhost/pathway"])


def test_the_runtime_modules_do_not_load_the_demo_or_the_cohort_generator() -> None:
    code = ("import sys, pathway, pathway.cli, pathway.web.app; "
            "print(sorted(m for m in sys.modules if m.startswith('pathway.demo') or m == 'pathway.cohort'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "[]"


def test_the_cohort_generator_runs_as_a_module_of_the_demo_package_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "cohort.jsonl"
    proc = subprocess.run([sys.executable, "-W", "error", "-m", "pathway.demo.cohort", "--patients", "3",
                           "--today", "2030-01-01", "--workers", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(proc.stdout)["patients"] == 3 and out.read_text().count("\n") == json.loads(proc.stdout)["events"]
