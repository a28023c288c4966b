"""Small builders for the events of docs/contract.md, so that a test states only what it is about.

Defaults follow clinical/vignettes.md: a decision carries the quorum
`[liver_surgeon, radiologist, oncologist]`, operative_risk low, complete_resection_feasible true,
resectability resectable (conversion and systemic plans: unresectable) and, for surgical plans,
flr_percent 40 — so that only the rule under test fires. Pass `OMIT` to leave a default field out.

Envelope fields (`key`, `by`, `note`, `override`) may be passed to any builder as keywords; no
event type has a data field of those names.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pathway import Engine, Result

QUORUM = ["liver_surgeon", "radiologist", "oncologist"]
SURGICAL_PLANS = frozenset({"resection", "perioperative_chemotherapy", "portal_vein_embolization"})
START = date(2026, 1, 5)  # a Monday in winter (GMT)
LONDON = ZoneInfo("Europe/London")

#: Default lead days per reminder kind (spec section 5).
LEAD_DAYS = {
    "mdt_due": 2,
    "mdt_meeting": 2,
    "chemo_cycle": 2,
    "restaging_scan": 7,
    "surgery_due": 14,
    "pve_due": 7,
    "flr_scan": 7,
    "ablation_due": 7,
    "ablation_scan": 7,
    "surveillance": 14,
}

_ENVELOPE = ("key", "by", "note", "override")


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()


def iso(day: Any) -> Any:
    """A date as `YYYY-MM-DD`; anything else (a string, or a wrong type on purpose) as it is."""
    return day.isoformat() if isinstance(day, date) else day


def days(day: date, n: int) -> date:
    return day + timedelta(days=n)


def event(patient: str, type_: str, on: date | str, **fields: Any) -> dict[str, Any]:
    """One event: envelope keywords go to the envelope, every other keyword into `data`."""
    out: dict[str, Any] = {"patient": patient, "type": type_, "on": iso(on)}
    for name in _ENVELOPE:
        if name in fields:
            out[name] = fields.pop(name)
    out["data"] = {
        name: (iso(value) if isinstance(value, date) else value)
        for name, value in fields.items()
        if value is not OMIT
    }
    return out


def confirm(*codes: str, reason: str = "discussed at the MDT; deviation accepted") -> list[dict[str, str]]:
    """An `override` list confirming `codes`, each with a reason."""
    return [{"rule": code, "reason": reason} for code in codes]


# -- a fast database ---------------------------------------------------------------------------------

#: Memory-backed scratch space when the machine has one (fsync there is free), else the test's tmp_path.
_SHM = Path("/dev/shm")
_TEMPLATE: list[Path] = []


def _scratch(fallback: Path) -> Path:
    if _SHM.is_dir() and os.access(_SHM, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="pathway-test-", dir=_SHM))
    return fallback


def fast_sqlite(tmp_path: Path) -> Iterator[str]:
    """A SQLite URL whose file is a copy of an empty, migrated pathway database.

    Migrating a fresh database costs ~60 ms and every commit is fsynced (synchronous=FULL); copying
    a migrated template onto memory-backed storage makes a test's database nearly free. The engine
    opens it exactly as it opens any existing database of the current schema.
    """
    if not _TEMPLATE:
        where = _scratch(Path(tempfile.mkdtemp(prefix="pathway-template-")))
        atexit.register(shutil.rmtree, where, True)
        Engine.open(f"sqlite:///{where / 'template.db'}").close()
        _TEMPLATE.append(where / "template.db")
    folder = _scratch(tmp_path)
    target = folder / "pathway.db"
    shutil.copyfile(_TEMPLATE[0], target)
    try:
        yield f"sqlite:///{target}"
    finally:
        if folder != tmp_path:
            shutil.rmtree(folder, ignore_errors=True)


# -- one builder per event type -------------------------------------------------------------------


def referral(p: str, on: date | str, **data: Any) -> dict[str, Any]:
    data.setdefault("primary", "colorectal")
    return event(p, "referral", on, **data)


def scheduled(p: str, on: date | str, meeting_on: date | str, **data: Any) -> dict[str, Any]:
    return event(p, "mdt_scheduled", on, meeting_on=meeting_on, **data)


def decision(p: str, on: date | str, plan: str = "resection", **overrides: Any) -> dict[str, Any]:
    """An mdt_decision with the vignettes' defaults (quorate, feasible, low risk, resectable, flr 40)."""
    data: dict[str, Any] = {
        "attendees": list(QUORUM),
        "plan": plan,
        "resectability": "unresectable"
        if plan in ("conversion_chemotherapy", "systemic_therapy")
        else "resectable",
    }
    if plan not in ("systemic_therapy", "surveillance"):
        data["complete_resection_feasible"] = True
        data["operative_risk"] = "low"
    if plan in SURGICAL_PLANS:
        data["flr_percent"] = 40
    data.update(overrides)
    return event(p, "mdt_decision", on, **data)


def cycle(p: str, on: date | str, **data: Any) -> dict[str, Any]:
    return event(p, "cycle_given", on, **data)


def delayed(p: str, on: date | str, **data: Any) -> dict[str, Any]:
    data.setdefault("reason", "neutropenia")
    return event(p, "cycle_delayed", on, **data)


def stopped(p: str, on: date | str, reason: str = "completed", **data: Any) -> dict[str, Any]:
    return event(p, "chemo_stopped", on, reason=reason, **data)


def biomarker(p: str, on: date | str, **data: Any) -> dict[str, Any]:
    return event(p, "biomarker", on, **data)


def booked(p: str, on: date | str, what: str, for_: date | str, **data: Any) -> dict[str, Any]:
    return event(p, "booked", on, what=what, **{"for": for_}, **data)


def restaging(p: str, on: date | str, response: str = "stable", **data: Any) -> dict[str, Any]:
    return event(p, "restaging", on, response=response, **data)


def pve(p: str, on: date | str, **envelope: Any) -> dict[str, Any]:
    return event(p, "pve_performed", on, **envelope)


def surgery(p: str, on: date | str, procedure: str = "resection", **data: Any) -> dict[str, Any]:
    if procedure != "exploration_only":
        data.setdefault("margin", "R0")
    if procedure not in ("two_stage_first", "exploration_only"):
        data.setdefault("adjuvant", False)
    return event(p, "surgery", on, procedure=procedure, **data)


def ablation(p: str, on: date | str, technique: str = "MWA", **data: Any) -> dict[str, Any]:
    return event(p, "ablation_performed", on, technique=technique, **data)


def checked(p: str, on: date | str, complete: bool = True, **data: Any) -> dict[str, Any]:
    return event(p, "ablation_checked", on, complete=complete, **data)


def visit(p: str, on: date | str, finding: str = "clear", **data: Any) -> dict[str, Any]:
    return event(p, "surveillance_visit", on, finding=finding, **data)


def recurrence(p: str, on: date | str, sites: list[str] | None = None, **data: Any) -> dict[str, Any]:
    return event(p, "recurrence", on, sites=sites or ["liver"], **data)


def discharged(p: str, on: date | str, **data: Any) -> dict[str, Any]:
    return event(p, "discharged", on, **data)


def died(p: str, on: date | str, **envelope: Any) -> dict[str, Any]:
    return event(p, "died", on, **envelope)


def withdrawn(p: str, on: date | str, **data: Any) -> dict[str, Any]:
    return event(p, "withdrawn", on, **data)


def void(p: str, on: date | str, reason: str = "entered in error", **envelope: Any) -> dict[str, Any]:
    return event(p, "void", on, reason=reason, **envelope)


# -- recording and reading -------------------------------------------------------------------------


def accept(engine: Engine, ev: dict[str, Any]) -> Result:
    """Record `ev` and insist it is accepted (a precondition of the test, not its subject)."""
    result = engine.record(ev)
    assert result.status == "accepted", f"{ev['type']} on {ev['on']}: {result.as_dict()}"
    return result


def accept_all(engine: Engine, events: list[dict[str, Any]]) -> Result:
    result = None
    for ev in events:
        result = accept(engine, ev)
    assert result is not None
    return result


def cycles(engine: Engine, p: str, first: date, n: int, every: int = 14, **data: Any) -> date:
    """Record `n` cycles `every` days apart from `first`; return the date of the last one."""
    on = first
    for i in range(n):
        on = days(first, i * every)
        accept(engine, cycle(p, on, **data))
    return on


def codes(result: Result) -> list[str]:
    return [r.code for r in result.reasons]


def the_reason(result: Result, code: str) -> Any:
    found = [r for r in result.reasons if r.code == code]
    assert len(found) == 1, f"expected one {code} in {codes(result)}"
    return found[0]


def pending(engine: Engine, p: str, kind: str | None = None) -> list[Any]:
    return [r for r in engine.show(p).reminders if kind is None or r.kind == kind]


def due(engine: Engine, p: str, kind: str) -> list[date]:
    """The due dates of the pending reminders of one kind, in order."""
    return sorted(r.due_on for r in pending(engine, p, kind))


def kinds(engine: Engine, p: str) -> set[str]:
    return {r.kind for r in pending(engine, p)}


def frozen(engine: Engine, p: str) -> tuple[Any, ...]:
    """What must not change when an event is refused or invalid: state, version, pending reminders."""
    view = engine.show(p)
    reminders = sorted((r.key, r.kind, r.due_on, r.notify_at) for r in view.reminders)
    return view.state, view.version, tuple(reminders)


def london_8am(day: date) -> datetime:
    """08:00 in the clinic's zone (Europe/London) on `day`, as a UTC instant."""
    return datetime.combine(day, time(8, 0), tzinfo=LONDON).astimezone(UTC)


# -- walking a patient to a state -------------------------------------------------------------------

#: The plan of the MDT decision that leads to each state (spec 3.1).
PLAN_FOR = {
    "neoadjuvant_chemo": "perioperative_chemotherapy",
    "conversion_chemo": "conversion_chemotherapy",
    "systemic_therapy": "systemic_therapy",
    "resection": "resection",
    "ablation": "ablation",
    "portal_vein_embolization": "portal_vein_embolization",
}


def walk_to(
    engine: Engine,
    p: str,
    state: str,
    *,
    on: date = START,
    primary: str = "colorectal",
    referral_data: dict[str, Any] | None = None,
    **decision_fields: Any,
) -> date:
    """Record the events that bring a new patient to `state`; return the date of the last one.

    referral (day 0) -> mdt_scheduled (day 1, meeting day 7) -> mdt_decision (day 7) -> for
    adjuvant_chemo / follow_up: plan resection, surgery on day 21 with adjuvant true / false.
    Terminal states are reached from referral on day 1.
    """
    accept(engine, referral(p, on, primary=primary, **(referral_data or {})))
    if state == "referral":
        return on
    terminal = {"discharged": discharged, "deceased": died, "withdrawn": withdrawn}
    if state in terminal:
        accept(engine, terminal[state](p, days(on, 1)))
        return days(on, 1)
    accept(engine, scheduled(p, days(on, 1), days(on, 7)))
    if state == "mdt_assessment":
        return days(on, 1)
    if state in ("follow_up", "adjuvant_chemo"):
        accept(engine, decision(p, days(on, 7), "resection", **decision_fields))
        accept(engine, surgery(p, days(on, 21), adjuvant=state == "adjuvant_chemo"))
        return days(on, 21)
    accept(engine, decision(p, days(on, 7), PLAN_FOR[state], **decision_fields))
    assert engine.show(p).state == state
    return days(on, 7)
