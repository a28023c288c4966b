"""Random event histories (Hypothesis stateful testing) and the invariants that hold after every step:

- the patient's state is one of the spec's states;
- a refused, invalid or duplicate event changes nothing (state, version, pending reminders);
- no two pending reminders share a key;
- replaying the accepted history reproduces the stored snapshot and reminders exactly.

Profiles: `ci` (the default, fast) and `long` (10,000 histories):
    scripts/test tests/test_stateful.py --hypothesis-profile=long
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from hypothesis import event as event_note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pathway import Engine, ManualClock, Status
from states.definition import DEFINITION, RULES
from states.vocabulary import (
    Biologic,
    Bookable,
    EventType,
    Extrahepatic,
    Liver,
    Plan,
    Primary,
    Procedure,
    Regimen,
    Resectability,
    Response,
    State,
    StopReason,
)
from tests.conftest import PINNED

TODAY = date(2033, 1, 1)
_ENGINE: Engine | None = None


def shared_engine() -> Engine:
    """One engine on the in-memory twin for the whole run (each history uses patients of its own)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Engine.open("memory://", clock=ManualClock(PINNED))
    return _ENGINE


def quorum() -> st.SearchStrategy[list[str]]:
    return st.sampled_from([
        ["liver_surgeon", "radiologist", "oncologist"],
        ["liver_surgeon", "radiologist"],
        ["oncologist", "radiologist"],  # no quorum: MDT_QUORUM
    ])


GOOD_RESECTABILITY = {
    Plan.conversion_chemotherapy: "unresectable",
    Plan.systemic_therapy: "unresectable",
    Plan.surveillance: "resectable",
}


def good_decision(plan: Plan) -> dict:
    """A decision the rules accept for a colorectal primary (the vignettes' defaults)."""
    return {"attendees": ["liver_surgeon", "radiologist", "oncologist"], "plan": str(plan),
            "resectability": GOOD_RESECTABILITY.get(plan, "resectable"), "complete_resection_feasible": True,
            "operative_risk": "low", "flr_percent": 45}


def decision_data() -> st.SearchStrategy[dict]:
    return st.one_of(st.sampled_from(list(Plan)).map(good_decision), st.sampled_from(list(Plan)).map(good_decision),
                     _any_decision())


def _any_decision() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "attendees": quorum(),
            "plan": st.sampled_from(list(Plan)).map(str),
            "resectability": st.sampled_from(
                [Resectability.resectable] * 3 + [Resectability.potentially_resectable, Resectability.unresectable]
            ).map(str),
            "complete_resection_feasible": st.sampled_from([True, True, True, False]),
            "operative_risk": st.sampled_from(["low", "low", "high"]),
        },
        optional={
            "flr_percent": st.integers(10, 60),
            "liver": st.sampled_from(list(Liver)).map(str),
            "extrahepatic": st.sampled_from(list(Extrahepatic)).map(str),
            "regimen": st.sampled_from(list(Regimen)).map(str),
            "biologic": st.sampled_from([Biologic.none, Biologic.bevacizumab, Biologic.cetuximab]).map(str),
            "ras": st.sampled_from(["wild_type", "mutant"]),
            "largest_lesion_cm": st.floats(0.5, 6, allow_nan=False).map(lambda x: round(x, 1)),
        },
    )


def data_for(kind: EventType, on: date) -> st.SearchStrategy[dict]:
    later = st.integers(0, 60).map(lambda d: (on + timedelta(days=d)).isoformat())
    return {
        EventType.mdt_scheduled: st.fixed_dictionaries({"meeting_on": later}),
        EventType.mdt_decision: decision_data(),
        EventType.cycle_given: st.fixed_dictionaries({}, optional={"biologic": st.sampled_from(["bevacizumab", "none"])}),
        EventType.cycle_delayed: st.one_of(
            st.fixed_dictionaries({"days": st.integers(1, 21), "reason": st.just("counts")}),
            st.fixed_dictionaries({"until": later, "reason": st.just("counts")}),
        ),
        EventType.chemo_stopped: st.fixed_dictionaries({"reason": st.sampled_from(list(StopReason)).map(str)}),
        EventType.biomarker: st.fixed_dictionaries({"ras": st.sampled_from(["wild_type", "mutant"])}),
        EventType.booked: st.fixed_dictionaries({"what": st.sampled_from(list(Bookable)).map(str), "for": later}),
        EventType.restaging: st.fixed_dictionaries(
            {"response": st.sampled_from(list(Response)).map(str)},
            optional={"resectable": st.booleans(), "flr_percent": st.integers(10, 60),
                      "disappeared_lesions": st.integers(0, 2)},
        ),
        EventType.surgery: st.sampled_from(list(Procedure)).flatmap(
            lambda p: st.just({"procedure": str(p)}) if p is Procedure.exploration_only else st.fixed_dictionaries(
                {"procedure": st.just(str(p)), "margin": st.sampled_from(["R0", "R0", "R1", "R2"]),
                 "adjuvant": st.booleans()})
        ),
        EventType.ablation_performed: st.fixed_dictionaries({"technique": st.sampled_from(["RFA", "MWA"]),
                                                             "adjuvant": st.booleans()}),
        EventType.ablation_checked: st.fixed_dictionaries({"complete": st.sampled_from([True, True, False])}),
        EventType.surveillance_visit: st.fixed_dictionaries({"finding": st.sampled_from(["clear", "clear", "suspicious"])}),
        EventType.recurrence: st.just({"sites": ["liver"]}),
        EventType.discharged: st.just({}),
        EventType.died: st.just({}),
        EventType.withdrawn: st.just({}),
        EventType.pve_performed: st.just({}),
        EventType.void: st.just({"reason": "entered in error"}),
    }[kind]


#: Leaving the pathway or undoing are rarer than moving along it.
WEIGHT = {EventType.died: 1, EventType.withdrawn: 1, EventType.discharged: 1, EventType.void: 2,
          EventType.biomarker: 2, EventType.booked: 3}


class PathwayHistories(RuleBasedStateMachine):
    """Random histories for a couple of patients, checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = shared_engine()
        self.prefix = uuid.uuid4().hex[:8]
        self.latest: dict[str, date] = {}
        self.touched: str | None = None
        self.before: tuple | None = None
        self.last_status: Status | None = None

    def snapshot(self, patient: str) -> tuple:
        view = self.engine.show(patient)
        return view.state, view.version, tuple((r.key, r.due_on) for r in view.reminders)

    def submit(self, patient: str, event: dict) -> None:
        self.before = self.snapshot(patient) if patient in self.latest else None
        result = self.engine.record(event)
        event_note(f"{event['type']}: {result.status}")
        event_note(f"state reached: {result.state}")
        self.touched = patient
        self.last_status = result.status
        if result.status is Status.accepted:
            self.latest[patient] = max(self.latest.get(patient, date.min), date.fromisoformat(event["on"]))

    @initialize(primary=st.sampled_from(list(Primary)), volume=st.sampled_from([True, True, False]),
                prior=st.booleans(), count=st.integers(1, 2))
    def referrals(self, primary: Primary, volume: bool, prior: bool, count: int) -> None:
        for n in range(count):
            patient = f"H{self.prefix}-{n}"
            self.submit(patient, {"patient": patient, "type": "referral", "on": "2026-01-05",
                                  "data": {"primary": str(primary), "high_volume_centre": volume, "prior_chemo": prior}})

    @rule(data=st.data(), which=st.integers(0, 1), gap=st.integers(0, 45), overrides=st.booleans(),
          keyed=st.sampled_from([None, None, "k1", "k2"]))
    def an_allowed_event(self, data: st.DataObject, which: int, gap: int, overrides: bool, keyed: str | None) -> None:
        self.step_forward(data=data, which=which, gap=gap, overrides=overrides, keyed=keyed)

    def step_forward(self, data: st.DataObject, which: int, gap: int, overrides: bool, keyed: str | None) -> None:
        """Mostly events the current state allows, so histories go deep into the pathway."""
        patients = sorted(self.latest)
        patient = patients[which % len(patients)]
        state = State(self.engine.show(patient).state)
        kind = data.draw(st.sampled_from([k for k in DEFINITION.allowed_events(state) for _ in range(WEIGHT.get(k, 6))
                                          if k is not EventType.referral]))
        on = min(self.latest[patient] + timedelta(days=gap), TODAY)
        event = {"patient": patient, "type": str(kind), "on": on.isoformat(), "data": data.draw(data_for(kind, on))}
        if overrides:  # confirm every confirm-level rule, as a coordinator with reasons would
            event["override"] = [{"rule": code, "reason": "MDT agreed"} for code in sorted(RULES)]
        if keyed:
            event["key"] = keyed
        self.submit(patient, event)

    # Hypothesis picks rules uniformly: the same step twice more makes histories move along.
    moves_along = rule(data=st.data(), which=st.integers(0, 1), gap=st.integers(0, 45), overrides=st.booleans(),
                       keyed=st.sampled_from([None, None, "k1", "k2"]))(lambda self, **kw: self.step_forward(**kw))
    keeps_going = rule(data=st.data(), which=st.integers(0, 1), gap=st.integers(0, 45), overrides=st.booleans(),
                       keyed=st.just(None))(lambda self, **kw: self.step_forward(**kw))

    @rule(data=st.data(), which=st.integers(0, 1), gap=st.integers(-20, 30),
          kind=st.sampled_from([k for k in EventType if WEIGHT.get(k, 6) > 1]))
    def any_event(self, data: st.DataObject, which: int, kind: EventType, gap: int) -> None:
        """Any event type, in any state, sometimes dated before the latest event (then invalid)."""
        patients = sorted(self.latest)
        patient = patients[which % len(patients)]
        on = min(self.latest[patient] + timedelta(days=gap), TODAY)
        payload = data.draw(data_for(kind, on)) if kind is not EventType.referral else {"primary": "colorectal"}
        self.submit(patient, {"patient": patient, "type": str(kind), "on": on.isoformat(), "data": payload})

    @rule(which=st.integers(0, 1), junk=st.sampled_from([
        {"type": "cycle_given", "on": "2026-13-01"},
        {"type": "biomarker", "on": "2026-02-01", "data": {}},
        {"type": "surgery", "on": "2026-02-01", "data": {"procedure": "resection", "margin": "R0", "adjuvant": "yes"}},
        {"type": "mdt_scheduled", "on": "2026-02-01", "data": {"meeting_on": "2026-01-01"}},
        {"type": "restaging", "on": "2026-02-01", "data": {"response": "stable", "colour": "blue"}},
        {"type": "discharged", "on": "2099-01-01"},
    ]))
    def an_invalid_event(self, which: int, junk: dict) -> None:
        patients = sorted(self.latest)
        patient = patients[which % len(patients)]
        self.submit(patient, {"patient": patient, **junk})

    @invariant()
    def the_touched_patient_is_consistent(self) -> None:
        if self.touched is None or self.touched not in self.latest:
            return
        patient = self.touched
        now = self.snapshot(patient)
        assert now[0] in {str(s) for s in State}
        if self.last_status is not Status.accepted and self.before is not None:
            assert now == self.before, f"a {self.last_status} event changed the patient"
        keys = [key for key, _ in now[2]]
        assert len(keys) == len(set(keys)), "two pending reminders share a key"
        assert self.engine.verify(patient) == [], "replay differs from the stored snapshot"


TestPathwayHistories = PathwayHistories.TestCase
