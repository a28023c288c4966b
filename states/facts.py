"""The patient snapshot: everything the guards and the care plan need, folded from the history.

A `Snapshot` is a frozen value. Applying an accepted event gives a new snapshot
(`states.pathway.evolve`); replaying a patient's accepted history from nothing gives the stored one.
It is stored as JSON (`as_dict` / `from_dict`), so every field is a plain value.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from states.errors import PathwayError
from states.vocabulary import Biologic, Extent, Liver, PhaseKind, Plan, Regimen, State

#: The shape of a stored snapshot. A stored snapshot of an older shape is not read as this one (its
#: new fields would silently take their defaults): the engine replays the patient's history instead
#: (`StaleSnapshot`), and `pathway db upgrade` rewrites them all. 2: cancer waiting-time clocks.
SNAPSHOT_SCHEMA = 2


class StaleSnapshot(PathwayError):
    """A stored snapshot of an older shape than SNAPSHOT_SCHEMA: replay the history instead."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The latest accepted MDT decision (spec 3.1), as later rules and reminders use it."""

    on: date
    plan: Plan
    regimen: Regimen
    biologic: Biologic
    extent: Extent
    flr_percent: float | None
    #: The liver as recorded at the decision ...
    liver: Liver
    #: ... and as it counted then (a normal liver after 12 weeks of chemotherapy is chemo_injured).
    liver_effective: Liver


@dataclass(frozen=True, slots=True)
class Phase:
    """The current course of chemotherapy."""

    seq: int  # 1, 2, ... per patient: part of reminder keys
    kind: PhaseKind
    regimen: Regimen
    biologic: Biologic
    started_on: date  # the MDT decision, or the surgery / ablation for adjuvant chemotherapy
    next_due: date  # the next cycle, delays applied
    cycles: int = 0
    last_cycle_on: date | None = None
    last_cycle_regimen: Regimen | None = None
    restagings: int = 0
    restaging_due: date | None = None  # conversion and systemic: first cycle + 56, then restaging + 56


@dataclass(frozen=True, slots=True)
class Clock:
    """A cancer waiting-time clock (docs/contract.md section 8): what started it and, once it
    stopped, what stopped it. Its status, days left and forecast depend on today and the plan
    (`states.clocks.view`)."""

    seq: int  # 1, 2, ... per patient
    standard: str  # ClockStandard
    started_on: date
    target_on: date  # the last compliant day
    treatment: str  # "first" or "subsequent" (31-day: which treatment it waits for)
    opened_by: str  # e.g. "referral (urgent_suspected_cancer)", "mdt_decision (resection)"
    stopped_on: date | None = None
    stopped_by: str | None = None  # the treatment that started, or why the clock was removed
    removed: bool = False  # ended without treatment (died, withdrew, discharged): not reported

    @property
    def running(self) -> bool:
        return self.stopped_on is None


@dataclass(frozen=True)
class Snapshot:
    patient: str
    state: State
    primary: str
    referred_on: date
    latest_on: date  # the latest effective event: a new event may not be dated earlier
    entered_on: date  # when the current state was entered
    high_volume_centre: bool = True
    prior_chemo: bool = False
    # biomarkers, the latest recorded (biomarker events or MDT decisions)
    ras: str | None = None
    braf: str | None = None
    msi: str | None = None
    sidedness: str | None = None
    decision: Decision | None = None
    # MDT: the stay in referral / mdt_assessment, its due date anchor and the meeting booked
    mdt_seq: int = 1
    mdt_anchor: date | None = None
    meeting_on: date | None = None
    # chemotherapy
    phase: Phase | None = None
    phase_seq: int = 0
    chemo_days: int = 0  # total days of chemotherapy given since referral (sum of cycle lengths)
    last_cycle_on: date | None = None
    last_bev_on: date | None = None
    # liver procedures and progression
    last_procedure_on: date | None = None  # any liver surgery or ablation
    #: A description of the latest restaging / progression event since referral (or since the last
    #: liver surgery or ablation) when it is a progression; None when it is not.
    progression: str | None = None
    #: Breast primaries: True once a restaging on systemic therapy showed no progression (its latest).
    systemic_restaged_ok: bool | None = None
    resection_seq: int = 0
    pve_seq: int = 0
    pve_due_planned: bool = False  # entered portal_vein_embolization from a decision, PVE not done yet
    pve_anchor: date | None = None  # pve_performed, or the first stage of a two-stage hepatectomy
    flr_scan_seq: int = 0
    flr_scan_due: date | None = None
    ablation_seq: int = 0
    ablation_scan_seq: int = 0
    ablation_scan_due: date | None = None
    imaging_seq: int = 0
    imaging_due: date | None = None
    # surveillance
    treatment_end: date | None = None  # end of the last curative treatment
    surv_anchor: date | None = None
    surv_done: tuple[str, ...] = ()  # "anchor:month" of visits done
    # bookings: reminder key suffix -> booked date
    bookings: tuple[tuple[str, date], ...] = field(default=())
    # cancer waiting times: every clock opened, in order; the date of the first treatment
    clocks: tuple[Clock, ...] = ()
    first_treatment_on: date | None = None
    #: The shape this snapshot is stored in (orjson writes every field; `as_dict` writes it too).
    schema: int = SNAPSHOT_SCHEMA

    def replace(self, **changes: Any) -> Snapshot:
        """A copy with `changes`. An unknown field name is an error, not a change silently dropped
        (replay would repeat the typo, so `verify` could never see it)."""
        if not _FIELD_NAMES.issuperset(changes):
            unknown = ", ".join(sorted(set(changes) - _FIELD_NAMES))
            raise TypeError(f"Snapshot has no field {unknown}")
        new = object.__new__(Snapshot)
        values = new.__dict__
        values.update(self.__dict__)  # a frozen dataclass without slots: a dict copy, ~40x faster
        values.update(changes)
        return new

    @property
    def clock_target(self) -> date | None:
        """The earliest target date among the running clocks (stored beside the snapshot: the
        patient tracking list reads the patients with one)."""
        targets = [c.target_on for c in self.clocks if c.stopped_on is None]
        return min(targets) if targets else None

    def booking(self, key: str) -> date | None:
        for booked_key, when in self.bookings:
            if booked_key == key:
                return when
        return None

    # -- JSON ----------------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values; fields at their defaults are left out (smaller rows, faster I/O)."""
        out: dict[str, Any] = {"schema": SNAPSHOT_SCHEMA}
        values = self.__dict__
        for name, required, default in _ENCODING:
            value = values[name]
            if required or value != default:
                kind = type(value)
                if kind is date:
                    out[name] = value.isoformat()
                elif value is None or kind is int or kind is bool or kind is float or kind is str:
                    out[name] = value
                else:
                    out[name] = _encode(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        values = dict(data)
        schema = values.pop("schema", 1)
        if schema != SNAPSHOT_SCHEMA:
            raise StaleSnapshot(f"snapshot of {values.get('patient')} has shape {schema}, not {SNAPSHOT_SCHEMA}")
        for name in _DATE_FIELDS:
            if values.get(name) is not None:
                values[name] = date.fromisoformat(values[name])
        values["state"] = State(values["state"])
        if values.get("decision") is not None:
            d = dict(values["decision"])
            d["on"] = date.fromisoformat(d["on"])
            d["plan"] = Plan(d["plan"])
            d["regimen"] = Regimen(d["regimen"])
            d["biologic"] = Biologic(d["biologic"])
            d["extent"] = Extent(d["extent"])
            d["liver"] = Liver(d["liver"])
            d["liver_effective"] = Liver(d["liver_effective"])
            values["decision"] = Decision(**d)
        if values.get("phase") is not None:
            p = dict(values["phase"])
            for name in ("started_on", "next_due", "last_cycle_on", "restaging_due"):
                if p.get(name) is not None:
                    p[name] = date.fromisoformat(p[name])
            p["kind"] = PhaseKind(p["kind"])
            p["regimen"] = Regimen(p["regimen"])
            p["biologic"] = Biologic(p["biologic"])
            if p.get("last_cycle_regimen") is not None:
                p["last_cycle_regimen"] = Regimen(p["last_cycle_regimen"])
            values["phase"] = Phase(**p)
        values["clocks"] = tuple(_clock(c) for c in values.get("clocks", ()))
        values["surv_done"] = tuple(values.get("surv_done", ()))
        values["bookings"] = tuple((k, date.fromisoformat(v)) for k, v in values.get("bookings", ()))
        return cls(**values)


def _clock(data: dict[str, Any]) -> Clock:
    c = dict(data)
    for name in ("started_on", "target_on", "stopped_on"):
        if c.get(name) is not None:
            c[name] = date.fromisoformat(c[name])
    return Clock(**c)


_SNAPSHOT_FIELDS = tuple(f.name for f in dataclasses.fields(Snapshot))
_FIELD_NAMES = frozenset(_SNAPSHOT_FIELDS)
_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(Snapshot) if f.default is not dataclasses.MISSING
}
_ENCODING = tuple((name, name not in _DEFAULTS, _DEFAULTS.get(name)) for name in _SNAPSHOT_FIELDS)

#: The fields holding a date (their type says so): stored as ISO text.
_DATE_FIELDS = tuple(f.name for f in dataclasses.fields(Snapshot) if f.type in ("date", "date | None"))


_NAMES: dict[type, tuple[str, ...]] = {}


def _encode(value: Any) -> Any:
    """Plain JSON values: dates as ISO strings, dataclasses as dicts, tuples as lists (hot path)."""
    kind = type(value)
    if value is None or kind is int or kind is bool or kind is float:
        return value
    if kind is date:
        return value.isoformat()
    if isinstance(value, str):
        return str(value)  # StrEnum -> plain str
    if kind is tuple or kind is list:
        return [_encode(v) for v in value]
    if kind is Decision or kind is Phase or kind is Clock:
        return dict(_encode_value_object(value))
    names = _NAMES.get(kind)
    if names is None:
        names = _NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    return {name: _encode(getattr(value, name)) for name in names}


@functools.lru_cache(maxsize=16384)
def _encode_value_object(value: Decision | Phase | Clock) -> dict[str, Any]:
    """Decisions and phases are frozen and change far less often than the snapshot holding them."""
    return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
