"""A synthetic cohort: patients walking realistic routes through the pathway, for demos and benchmarks.

Each patient is driven by the pure domain, never by hand-computed dates: the generator keeps the
patient's `Snapshot`, asks the care plan (`states.plan.project`) what is due next, writes the
event a clinic would record for it (with a few days of jitter), and applies it with
`states.pathway.decide`. An event the domain does not accept is a bug of this generator and
raises `CohortError` — except a few deliberate, realistic overrides (a cycle brought forward, a
3.5 cm lesion ablated, a low-volume centre that operates), which carry their override reason.
A patient stops where the next event would fall after `today` (so reminders are pending around
today) or in a terminal state.

    events = generate_patient(1, random.Random(1), date(2030, 1, 1), DEFAULT_POLICY)
    for patient in generate(1000, seed=7, today=date(2030, 1, 1)): ...
    write_interleaved("cohort.jsonl", 100_000, today=date(2030, 1, 1))   # bounded memory

Routes and their weights (per 100 referrals) are in `ROUTES`; referral dates are spread over the
`REFERRAL_SPAN_DAYS` before `today`, so the cohort holds patients at every stage, from a referral
last week to the end of five-year surveillance. No real patient data: ids are `P000123`.

Run `python -m pathway.demo.cohort --help` to write a cohort file from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from states.context import effective_liver
from states.errors import PathwayError
from states.events import EventValidationError, parse_event
from states.facts import Snapshot
from states.pathway import decide
from states.plan import Planned, project
from states.planning import planned_postop, planned_preop
from states.policy import DEFAULT_POLICY, Policy
from states.vocabulary import (
    NON_TERMINAL_STATES,
    TERMINAL_STATES,
    Liver,
    PhaseKind,
    State,
    Status,
)

#: Referral dates are spread uniformly over this many days before `today` (about 5.5 years: the
#: earliest patients have finished five-year surveillance).
REFERRAL_SPAN_DAYS = 2000

#: Routes through the pathway and their relative weights (per 100 referrals).
ROUTES: dict[str, int] = {
    "perioperative_folfox": 18,  # EORTC 40983: 6 + 6 FOLFOX around resection
    "perioperative_capox": 11,  # 4 + 4 CAPOX
    "upfront_resection": 10,  # resection, then surveillance
    "resection_adjuvant": 8,  # resection, then adjuvant chemotherapy
    "pve_resection": 5,  # remnant too small: portal vein embolization, then resection
    "two_stage": 4,  # bilobar disease: two-stage hepatectomy (with or without PVE in between)
    "conversion": 11,  # unresectable: conversion chemotherapy; about a third become resectable
    "systemic": 13,  # palliative systemic therapy (often uncontrollable extrahepatic disease)
    "ablation": 8,  # small lesions (<= 3 cm): thermal ablation
    "breast": 4,  # breast primary: systemic therapy first, then maybe resection
    "neuroendocrine": 5,  # neuroendocrine primary: resection, debulking allowed
    "not_for_treatment": 3,  # the MDT finds no liver-directed treatment: discharged
}

_QUORUM = ("liver_surgeon", "radiologist")
_OTHERS = ("oncologist", "pathologist", "nurse", "gastroenterologist")
_PALLIATIVE_MEAN_DAYS = 600  # mean survival from the start of palliative therapy (exponential)


class CohortError(PathwayError, RuntimeError):
    """The domain did not accept an event the generator produced: a generator (or domain) bug."""


class _Stop(PathwayError):  # noqa: N818 - control flow, never escapes this module
    """The patient's story ends here: the next event would fall after today, or a terminal state."""


def patient_id(index: int) -> str:
    return f"P{index:06d}"


def patient_rng(seed: int, index: int) -> random.Random:
    """Each patient has a random stream of its own: deterministic, and independent of the others."""
    return random.Random(f"cohort:{seed}:{index}")


class _Walk:
    """One patient's story, built event by event against the pure domain."""

    def __init__(self, index: int, rng: random.Random, today: date, policy: Policy, route: str,
                 referred_on: date):
        self.id = patient_id(index)
        self.rng = rng
        self.today = today
        self.policy = policy
        self.route = route
        self.referred_on = referred_on
        self.snapshot: Snapshot | None = None
        self.events: list[dict[str, Any]] = []
        self.mdt_reason = "initial"  # why the patient is (or will be) in mdt_assessment
        self.exit: tuple[date, str, dict[str, Any]] | None = None  # a death or withdrawal to come
        self.booked: set[str] = set()  # reminder keys already booked (book once)
        self.line = 0  # lines of palliative systemic therapy started
        self.recurrences = 0
        self.recurrence_sites: list[str] = ["liver"]
        self.regimens_used: list[str] = []  # colorectal regimens given, in order
        self.adjuvant = False  # whether the planned liver procedure is followed by chemotherapy
        self.debulking = False  # neuroendocrine: complete resection not feasible
        self.two_stage = False  # the planned resection is a two-stage hepatectomy
        self.stage_one_done = False
        self.pve_between_stages = False
        self.flr_drop = False  # perioperative: the remnant turns out too small after chemotherapy
        self.regimen: str | None = None  # the perioperative regimen (kept through PVE for adjuvant)
        self.primary = {"breast": "breast", "neuroendocrine": "neuroendocrine"}.get(route, "colorectal")
        if route == "systemic" and rng.random() < 0.1:
            self.primary = "other"
        self.high_volume = rng.random() >= 0.02
        self.ras = rng.choices(("wild_type", "mutant", "unknown"), (48, 47, 5))[0]
        self.sidedness = rng.choices(("left", "right"), (70, 30))[0]
        self.extrahepatic = "none"
        if route == "systemic":
            self.extrahepatic = rng.choices(("none", "controllable", "uncontrollable"), (45, 15, 40))[0]
        elif route in ("perioperative_folfox", "perioperative_capox", "conversion") and rng.random() < 0.08:
            self.extrahepatic = "controllable"  # e.g. one resectable lung nodule

    # -- applying events ---------------------------------------------------------------------

    @property
    def s(self) -> Snapshot:
        assert self.snapshot is not None
        return self.snapshot

    def day(self, wanted: date) -> date:
        """`wanted`, or the patient's latest event date if that is later (events go in date order)."""
        if self.snapshot is not None and wanted < self.snapshot.latest_on:
            return self.snapshot.latest_on
        return wanted

    def emit(self, kind: str, on: date, data: dict[str, Any] | None = None, *, why: str | None = None,
             expect: State | None = None, override: list[dict[str, str]] | None = None,
             note: str | None = None) -> None:
        """Record `kind` on `on` (moved to the latest event date if earlier), or stop the story."""
        on = self.day(on)
        if self.exit is not None and on >= self.exit[0]:
            exit_on, exit_kind, exit_data = self.exit
            self.exit = None
            exit_on = self.day(exit_on)
            if exit_on <= self.today:
                self._apply(exit_kind, exit_on, exit_data, None, None, None, None)
            raise _Stop
        if on > self.today:
            raise _Stop
        self._apply(kind, on, data or {}, why, expect, override, note)

    def _apply(self, kind: str, on: date, data: dict[str, Any], why: str | None, expect: State | None,
               override: list[dict[str, str]] | None, note: str | None) -> None:
        raw: dict[str, Any] = {"patient": self.id, "type": kind, "on": on.isoformat(), "data": data}
        if note:
            raw["note"] = note
        if override:
            raw["override"] = override
        try:
            outcome = decide(self.snapshot, parse_event(raw), self.policy, self.today)
        except EventValidationError as exc:
            raise CohortError(f"generated event is invalid: {exc}; event: {json.dumps(raw)}") from exc
        if outcome.status is not Status.accepted:
            codes = ", ".join(f"{r.code} ({r.severity})" for r in outcome.reasons)
            state = self.snapshot.state if self.snapshot else None
            raise CohortError(f"generated event refused in state {state}: {codes}; event: {json.dumps(raw)}")
        before = self.snapshot.state if self.snapshot else None
        if expect is not None and outcome.state is not expect:
            raise CohortError(f"generated event led to {outcome.state}, expected {expect} (route {self.route}); "
                              f"event: {json.dumps(raw)}")
        if outcome.state is State.mdt_assessment and before is not State.mdt_assessment and before is not None:
            if why is None and before is not State.referral:
                raise CohortError(f"{kind} led to mdt_assessment unexpectedly; event: {json.dumps(raw)}")
            if why is not None:
                self.mdt_reason = why
        self.snapshot = outcome.snapshot
        self.events.append(raw)

    # -- the story -----------------------------------------------------------------------------

    def run(self) -> None:
        rng = self.rng
        self.emit("referral", self.referred_on, self._referral_data())
        if rng.random() < 0.02:
            self.exit = (self.referred_on + timedelta(days=rng.randint(20, 900)), "withdrawn",
                         rng.choice(({}, {"reason": "moved to another region"}, {"reason": "declined treatment"})))
        elif self.route not in ("systemic", "not_for_treatment") and rng.random() < 0.12:
            self.exit = (self.referred_on + timedelta(days=rng.randint(150, 1900)), "died", {})
        try:
            if self.primary == "colorectal" and rng.random() < 0.5:
                data: dict[str, Any] = {"ras": self.ras, "sidedness": self.sidedness}
                if rng.random() < 0.5:
                    data["msi"] = rng.choices(("mss", "msi_high"), (95, 5))[0]
                self.emit("biomarker", self.referred_on + timedelta(days=rng.randint(1, 8)), data)
            for _ in range(2000):  # a story has far fewer events; this only bounds a bug
                if self.s.state in TERMINAL_STATES:
                    return
                self.step()
            raise CohortError(f"{self.id}: story did not end (route {self.route}, state {self.s.state})")
        except _Stop:
            return

    def _referral_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"primary": self.primary}
        if not self.high_volume:
            data["high_volume_centre"] = False
        if self.primary == "colorectal" and self.rng.random() < 0.05:
            data["prior_chemo"] = True  # chemotherapy began before a liver surgeon saw the case
        if self.rng.random() < 0.3:
            data["centre"] = self.rng.choice(("North General", "St Luke's", "Riverside", "County Hospital"))
        return data

    def step(self) -> None:
        s, rng = self.s, self.rng
        pending = project(s, self.policy)
        if (s.state is State.portal_vein_embolization and self.stage_one_done and self.pve_between_stages
                and s.pve_anchor is not None and s.pve_anchor == s.last_procedure_on):
            self.pve_between_stages = False  # PVE between the two stages, 2-3 weeks after stage one
            self.emit("pve_performed", s.latest_on + timedelta(days=rng.randint(12, 21)),
                      expect=State.portal_vein_embolization)
            return
        if not pending:
            if s.state is State.follow_up:  # five-year surveillance completed
                self.emit("discharged", s.latest_on + timedelta(days=rng.randint(0, 30)),
                          {"reason": "completed_surveillance"}, expect=State.discharged)
                return
            raise CohortError(f"{self.id}: nothing pending in state {s.state} (route {self.route})")
        first = pending[0]
        handler = getattr(self, f"_on_{first.kind}")
        handler(first)

    def jitter(self, due: date, before: int, after: int) -> date:
        return due + timedelta(days=self.rng.randint(-before, after))

    # -- reminders -----------------------------------------------------------------------------

    def _on_mdt_due(self, r: Planned) -> None:
        on = self.day(r.due_on - timedelta(days=self.rng.randint(0, 9)))
        self.emit("mdt_scheduled", on, {"meeting_on": (on + timedelta(days=self.rng.randint(2, 9))).isoformat()},
                  expect=State.mdt_assessment)

    def _on_mdt_meeting(self, r: Planned) -> None:
        self.mdt(r.due_on)

    def _on_chemo_cycle(self, r: Planned) -> None:
        s, rng, policy = self.s, self.rng, self.policy
        phase = s.phase
        assert phase is not None
        due = r.due_on
        if phase.kind is PhaseKind.adjuvant and phase.cycles >= 2 and rng.random() < 0.04:
            self.emit("chemo_stopped", self.jitter(due, 2, 2), {"reason": "toxicity"}, expect=State.follow_up)
            return
        if phase.kind is PhaseKind.adjuvant and phase.cycles >= 1 and rng.random() < 0.01:
            self.emit("recurrence", self.jitter(due, 6, 0), {"sites": ["liver"]}, why="recurrence",
                      expect=State.mdt_assessment)
            return
        if phase.kind is PhaseKind.neoadjuvant and phase.cycles >= 2 and rng.random() < 0.02:
            self.emit("chemo_stopped", self.jitter(due, 2, 2), {"reason": "toxicity"}, why="toxicity",
                      expect=State.mdt_assessment)
            return
        if phase.cycles >= 1 and rng.random() < 0.05:
            reason = rng.choice(("neutropenia", "thrombocytopenia", "infection", "patient request", "holiday"))
            data: dict[str, Any] = {"reason": reason}
            if rng.random() < 0.8:
                data["days"] = 7
            on = self.day(due - timedelta(days=rng.randint(0, 2)))
            if "days" not in data:
                data["until"] = (max(on, due) + timedelta(days=rng.randint(3, 14))).isoformat()
            self.emit("cycle_delayed", on, data, expect=s.state)
            return
        data = {"cycle": phase.cycles + 1} if rng.random() < 0.5 else {}
        last_planned_adjuvant = (phase.kind is PhaseKind.adjuvant
                                 and phase.cycles + 1 >= planned_postop(phase.regimen, policy))
        expect = State.follow_up if last_planned_adjuvant else s.state
        if phase.last_cycle_on is not None and rng.random() < 0.006:
            length = policy.cycle_length(phase.last_cycle_regimen or phase.regimen)
            early = phase.last_cycle_on + timedelta(days=length - policy.cycle_early_tolerance_days - 2)
            if early >= s.latest_on:  # brought forward: confirmed by the oncologist
                self.emit("cycle_given", early, data, expect=expect, override=[
                    {"rule": "CYCLE_TOO_EARLY", "reason": "brought forward before a public holiday closure"}])
                return
        on = self.jitter(due, 2, 3)
        if s.last_procedure_on is not None:  # wound healing after liver surgery or ablation
            on = max(on, s.last_procedure_on + timedelta(days=policy.adjuvant_min_days + rng.randint(0, 3)))
        self.emit("cycle_given", on, data, expect=expect)

    def _on_restaging_scan(self, r: Planned) -> None:
        s, rng = self.s, self.rng
        on = self.day(self.jitter(r.due_on, 3, 4))
        phase = s.phase
        assert phase is not None
        if s.state is State.neoadjuvant_chemo:
            if rng.random() < 0.06:
                self.emit("restaging", on, {"response": "progression"}, why="progression",
                          expect=State.mdt_assessment)
            elif self.flr_drop:
                flr = round(self.threshold_now() - rng.uniform(1, 6), 1)
                self.emit("restaging", on, {"response": "partial", "flr_percent": flr}, why="flr_low",
                          expect=State.mdt_assessment)
            elif rng.random() < 0.06:
                self.emit("restaging", on, {"response": "complete", "disappeared_lesions": rng.randint(1, 3)},
                          expect=State.resection)
            else:
                data: dict[str, Any] = {"response": rng.choices(("partial", "stable"), (60, 40))[0]}
                if rng.random() < 0.3:
                    data["resectable"] = True
                self.emit("restaging", on, data, expect=State.resection)
            return
        if s.state is State.conversion_chemo:
            roll = rng.random()
            if roll < 0.30:
                self.emit("restaging", on, {"response": "partial", "resectable": True}, why="converted",
                          expect=State.mdt_assessment)
            elif roll < 0.33:
                self.emit("restaging", on, {"response": "complete", "disappeared_lesions": rng.randint(1, 4)},
                          why="converted", expect=State.mdt_assessment)
            elif roll < 0.45:
                self.emit("restaging", on, {"response": "progression"}, why="progression",
                          expect=State.mdt_assessment)
            else:
                self.emit("restaging", on, {"response": rng.choice(("partial", "stable")), "resectable": False},
                          expect=State.conversion_chemo)
                if phase.restagings + 1 >= 4:  # never converted: stop and rediscuss
                    self.emit("chemo_stopped", on, {"reason": "completed"}, why="exhausted",
                              expect=State.mdt_assessment)
            return
        # systemic therapy (palliative, or breast first-line)
        roll = rng.random()
        convertible = self.extrahepatic != "uncontrollable" and self.recurrences == 0
        if self.route == "breast" and self.line == 1 and convertible and roll < 0.4:
            self.emit("restaging", on, {"response": rng.choice(("partial", "stable")), "resectable": True},
                      why="converted", expect=State.mdt_assessment)
        elif convertible and self.route != "breast" and roll < 0.03:
            self.emit("restaging", on, {"response": "partial", "resectable": True}, why="converted",
                      expect=State.mdt_assessment)
        elif roll > 0.8:
            self.emit("restaging", on, {"response": "progression"}, why="progression", expect=State.mdt_assessment)
        else:
            self.emit("restaging", on, {"response": rng.choices(("partial", "stable"), (40, 60))[0]},
                      expect=State.systemic_therapy)

    def _on_surgery_due(self, r: Planned) -> None:
        s, rng = self.s, self.rng
        if r.key not in self.booked and rng.random() < 0.5:
            self.booked.add(r.key)
            on = self.day(r.due_on - timedelta(days=rng.randint(5, 21)))
            when = max(on, r.due_on + timedelta(days=rng.randint(0, 10)))
            self.emit("booked", on, {"what": "surgery", "for": when.isoformat()}, expect=s.state)
            return
        on = r.due_on if r.key in self.booked else r.due_on + timedelta(days=rng.randint(0, 12))
        override = None
        if not s.high_volume_centre:
            override = [{"rule": "LOW_VOLUME_CENTRE", "reason": "network HPB surgeon operating on site"}]
        data: dict[str, Any]
        if self.two_stage and not self.stage_one_done:
            self.stage_one_done = True
            self.pve_between_stages = rng.random() < 0.6
            self.emit("surgery", on, {"procedure": "two_stage_first", "margin": "R0"}, override=override,
                      expect=State.portal_vein_embolization)
            return
        if self.two_stage:
            self.two_stage = self.stage_one_done = False
            data = {"procedure": "two_stage_second", "margin": rng.choices(("R0", "R1"), (85, 15))[0],
                    "adjuvant": self.adjuvant}
        elif rng.random() < 0.02:
            self.emit("surgery", on, {"procedure": "exploration_only"}, why="exploration", override=override,
                      expect=State.mdt_assessment)
            return
        else:
            procedure = "resection_with_ablation" if rng.random() < 0.12 else "resection"
            if self.debulking:
                margin = rng.choice(("R1", "R2"))
            else:
                margin = rng.choices(("R0", "R1", "R2"), (80, 17, 3))[0]
            data = {"procedure": procedure, "margin": margin, "adjuvant": self.adjuvant}
        if s.chemo_days > 0 and rng.random() < 0.7:
            data["pathological_response"] = rng.choice(("complete", "major", "minor", "none"))
        if data["margin"] == "R2":
            self.emit("surgery", on, data, why="r2", override=override, expect=State.mdt_assessment)
            return
        expect = State.adjuvant_chemo if self.adjuvant else State.follow_up
        self.emit("surgery", on, data, override=override, expect=expect)

    def _on_pve_due(self, r: Planned) -> None:
        rng = self.rng
        if r.key not in self.booked and rng.random() < 0.3:
            self.booked.add(r.key)
            on = self.day(r.due_on - timedelta(days=rng.randint(3, 10)))
            when = max(on, r.due_on + timedelta(days=rng.randint(-3, 5)))
            self.emit("booked", on, {"what": "pve", "for": when.isoformat()}, expect=State.portal_vein_embolization)
            return
        on = r.due_on if r.key in self.booked else self.jitter(r.due_on, 6, 3)
        self.emit("pve_performed", on, expect=State.portal_vein_embolization)

    def _on_flr_scan(self, r: Planned) -> None:
        s, rng, policy = self.s, self.rng, self.policy
        on = self.day(self.jitter(r.due_on, 2, 4))
        decision = s.decision
        threshold = policy.threshold(decision.liver_effective if decision is not None else Liver.normal)
        if rng.random() < 0.08:
            self.emit("restaging", on, {"response": "progression"}, why="progression", expect=State.mdt_assessment)
            return
        waited = (on - s.pve_anchor).days if s.pve_anchor is not None else 0
        if s.flr_scan_seq == 1 and waited < policy.pve_max_wait_days - policy.flr_rescan_days and rng.random() < 0.15:
            flr = round(threshold - rng.uniform(0.5, 4), 1)  # not enough growth yet: scan again
            self.emit("restaging", on, {"response": "stable", "flr_percent": flr},
                      expect=State.portal_vein_embolization)
            return
        flr = round(threshold + rng.uniform(1, 15), 1)
        self.emit("restaging", on, {"response": rng.choice(("stable", "partial")), "flr_percent": flr},
                  expect=State.resection)

    def _on_ablation_due(self, r: Planned) -> None:
        rng = self.rng
        if r.key not in self.booked and rng.random() < 0.4:
            self.booked.add(r.key)
            on = self.day(r.due_on - timedelta(days=rng.randint(3, 10)))
            when = max(on, r.due_on + timedelta(days=rng.randint(0, 7)))
            self.emit("booked", on, {"what": "ablation", "for": when.isoformat()}, expect=State.ablation)
            return
        on = r.due_on if r.key in self.booked else self.jitter(r.due_on, 3, 7)
        data = {"technique": rng.choice(("RFA", "MWA")), "adjuvant": self.adjuvant}
        self.emit("ablation_performed", on, data,
                  expect=State.adjuvant_chemo if self.adjuvant else State.follow_up)

    def _on_ablation_scan(self, r: Planned) -> None:
        on = self.jitter(r.due_on, 3, 5)
        if self.rng.random() < 0.1:
            self.emit("ablation_checked", on, {"complete": False}, why="incomplete_ablation",
                      expect=State.mdt_assessment)
        else:
            self.emit("ablation_checked", on, {"complete": True}, expect=self.s.state)

    def _on_surveillance(self, r: Planned) -> None:
        rng = self.rng
        on = self.jitter(r.due_on, 10, 10)
        if rng.random() < 0.01:
            self.emit("discharged", on, {"reason": "referred_back"}, expect=State.discharged)
            return
        suspicious = rng.random() < 0.09
        data: dict[str, Any] = {"finding": "suspicious" if suspicious else "clear"}
        if rng.random() < 0.8:
            data["cea"] = round(rng.uniform(6, 40) if suspicious else rng.uniform(0.5, 5), 1)
        self.emit("surveillance_visit", on, data, expect=State.follow_up)

    def _on_imaging_followup(self, r: Planned) -> None:
        rng = self.rng
        on = self.jitter(r.due_on, 2, 5)
        if rng.random() < 0.5:
            sites = rng.choices((["liver"], ["lung"], ["peritoneum"], ["liver", "lung"], ["bone"]),
                                (60, 15, 10, 10, 5))[0]
            self.emit("recurrence", on, {"sites": sites}, why="recurrence", expect=State.mdt_assessment)
            self.recurrence_sites = sites
        else:
            self.emit("surveillance_visit", on, {"finding": "clear"}, expect=State.follow_up)

    # -- MDT decisions -------------------------------------------------------------------------

    def threshold_now(self, liver: str = Liver.normal, extra_chemo_days: int = 0) -> float:
        """The FLR threshold for `liver` as the rules will see it (chemotherapy injures the liver)."""
        return self.policy.threshold(effective_liver(liver, self.s.chemo_days + extra_chemo_days, self.policy))

    def attendees(self) -> list[str]:
        others = [role for role in _OTHERS if self.rng.random() < 0.7]
        return [*_QUORUM, *others]

    def decision(self, plan: str, resectability: str, **fields: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"attendees": self.attendees(), "plan": plan, "resectability": resectability}
        if plan not in ("systemic_therapy", "surveillance"):
            data["complete_resection_feasible"] = fields.pop("complete_resection_feasible", True)
            data["operative_risk"] = fields.pop("operative_risk", "low")
        if self.extrahepatic != "none":
            data["extrahepatic"] = self.extrahepatic
        data.update({k: v for k, v in fields.items() if v is not None})
        return data

    def surgical_fields(self, *, extra_chemo_days: int = 0, minimum: float | None = None) -> dict[str, Any]:
        """extent, liver, flr_percent (above the threshold the liver will have), lesions."""
        rng = self.rng
        liver = rng.choices((Liver.normal, Liver.chemo_injured), (85, 15))[0]
        threshold = self.threshold_now(liver, extra_chemo_days)
        fields: dict[str, Any] = {"extent": rng.choices(("major", "minor"), (65, 35))[0], "liver": str(liver)}
        if fields["extent"] == "major" or rng.random() < 0.5:
            low = max(threshold, minimum or 0) + 2
            fields["flr_percent"] = round(rng.uniform(low, max(low + 5, 75)), 1)
        fields["lesion_count"] = rng.randint(1, 5)
        fields["largest_lesion_cm"] = round(rng.uniform(1.0, 7.0), 1)
        return fields

    def mdt(self, on: date) -> None:
        s = self.s
        why = self.mdt_reason
        if s.progression is not None or why in ("progression", "exploration", "exhausted"):
            self.systemic_line(on)
        elif why == "initial":
            self.initial_decision(on)
        elif why == "converted":
            self.resection_decision(on, adjuvant=self.primary == "colorectal" and self.rng.random() < 0.5,
                                    pve_possible=True)
        elif why == "flr_low":
            self.pve_decision(on, liver=s.decision.liver if s.decision else Liver.normal)
        elif why == "toxicity":
            self.resection_decision(on, adjuvant=False)
        elif why == "recurrence":
            self.recurrence_decision(on)
        elif why == "incomplete_ablation":
            if self.rng.random() < 0.5:
                self.ablation_decision(on)
            else:
                self.resection_decision(on, adjuvant=False)
        elif why == "r2":
            if self.primary == "neuroendocrine" and self.rng.random() < 0.6:
                self.emit("mdt_decision", on, self.decision("surveillance", "unresectable"), expect=State.follow_up)
            else:
                self.systemic_line(on)
        else:  # pragma: no cover - every reason is handled above
            raise CohortError(f"no MDT decision for reason {why}")

    def initial_decision(self, on: date) -> None:
        rng, route = self.rng, self.route
        if route in ("perioperative_folfox", "perioperative_capox"):
            regimen = "FOLFOX" if route == "perioperative_folfox" else "CAPOX"
            self.regimen = regimen
            self.regimens_used.append(regimen)
            preop_days = planned_preop(regimen, self.policy) * self.policy.cycle_length(regimen)
            self.adjuvant = True
            self.flr_drop = rng.random() < 0.05
            fields = self.surgical_fields(extra_chemo_days=preop_days)
            if self.flr_drop:
                fields.update(extent="major", liver="normal", flr_percent=round(self.threshold_now() + rng.uniform(
                    1, max(1.5, self.threshold_now(Liver.normal, preop_days) - self.threshold_now() - 1)), 1))
            biologic = rng.choices(("none", "bevacizumab"), (70, 30))[0]
            data = self.decision("perioperative_chemotherapy", "resectable", regimen=regimen,
                                 biologic=None if biologic == "none" else biologic, **fields)
            self.emit("mdt_decision", on, data, expect=State.neoadjuvant_chemo)
        elif route in ("upfront_resection", "resection_adjuvant", "neuroendocrine"):
            self.resection_decision(on, adjuvant=route == "resection_adjuvant")
        elif route == "pve_resection":
            self.adjuvant = rng.random() < 0.4
            self.pve_decision(on, liver=rng.choices((Liver.normal, Liver.chemo_injured), (70, 30))[0])
        elif route == "two_stage":
            self.two_stage = True
            self.adjuvant = rng.random() < 0.6
            fields = self.surgical_fields()
            fields.update(extent="major", bilobar=True, lesion_count=rng.randint(5, 14))
            fields.setdefault("flr_percent", round(self.threshold_now(fields["liver"]) + rng.uniform(5, 25), 1))
            self.emit("mdt_decision", on, self.decision("resection", "resectable", **fields), expect=State.resection)
        elif route == "conversion":
            regimen = rng.choice(("FOLFOX", "FOLFIRI"))
            self.regimens_used.append(regimen)
            data = self.decision("conversion_chemotherapy", rng.choice(("unresectable", "potentially_resectable")),
                                 complete_resection_feasible=rng.random() < 0.5, regimen=regimen,
                                 lesion_count=rng.randint(4, 20), bilobar=rng.random() < 0.7,
                                 **self.biologic_fields(anti_egfr=True))
            self.emit("mdt_decision", on, data, expect=State.conversion_chemo)
        elif route in ("systemic", "breast"):
            self.systemic_line(on)
        elif route == "ablation":
            self.ablation_decision(on)
        elif route == "not_for_treatment":
            self.emit("discharged", on, {"reason": "not_for_treatment"}, expect=State.discharged)
        else:  # pragma: no cover
            raise CohortError(f"unknown route {route}")

    def biologic_fields(self, *, anti_egfr: bool) -> dict[str, Any]:
        """A biologic for colorectal chemotherapy: anti-EGFR only for RAS wild-type left-sided tumours."""
        rng, s = self.rng, self.s
        if self.primary != "colorectal":
            return {}
        if anti_egfr and self.ras == "wild_type" and self.sidedness == "left" and rng.random() < 0.6:
            fields: dict[str, Any] = {"biologic": rng.choice(("cetuximab", "panitumumab"))}
            if s.ras != "wild_type":
                fields["ras"] = "wild_type"
            if s.sidedness != "left":
                fields["sidedness"] = "left"
            return fields
        if rng.random() < 0.65:
            return {"biologic": "bevacizumab"}
        return {}

    def resection_decision(self, on: date, *, adjuvant: bool, pve_possible: bool = False) -> None:
        rng = self.rng
        if self.primary == "breast":
            adjuvant = False
        self.adjuvant = adjuvant
        if self.exit is not None and self.exit[1] == "died" and self.line and rng.random() < 0.5:
            self.exit = None  # converted to resection: the palliative prognosis no longer holds
        if pve_possible and rng.random() < 0.12:
            self.pve_decision(on, liver=Liver.normal)
            return
        fields = self.surgical_fields()
        override = None
        if self.primary == "neuroendocrine":
            self.debulking = rng.random() < 0.4
            fields["complete_resection_feasible"] = not self.debulking
        elif rng.random() < 0.03:
            fields["operative_risk"] = "high"
            override = [{"rule": "HIGH_OPERATIVE_RISK", "reason": "fit after prehabilitation; anaesthetic review"}]
        if self.primary == "colorectal" and self.regimen is None:
            regimen = rng.choices(("FOLFOX", "CAPOX"), (60, 40))[0]
            fields["regimen"] = regimen
        elif self.regimen is not None:
            fields["regimen"] = self.regimen
        self.emit("mdt_decision", on, self.decision("resection", "resectable", **fields), override=override,
                  expect=State.resection)

    def pve_decision(self, on: date, *, liver: str) -> None:
        rng = self.rng
        threshold = self.threshold_now(liver)
        flr = round(rng.uniform(threshold - 10, threshold - 1), 1)
        data = self.decision("portal_vein_embolization", rng.choice(("resectable", "potentially_resectable")),
                             extent="major", liver=str(liver), flr_percent=flr,
                             regimen=self.regimen if self.primary == "colorectal" else None)
        self.emit("mdt_decision", on, data, expect=State.portal_vein_embolization)

    def ablation_decision(self, on: date) -> None:
        rng = self.rng
        self.adjuvant = self.primary == "colorectal" and rng.random() < 0.1
        override = None
        size = round(rng.uniform(0.8, 3.0), 1)
        if rng.random() < 0.05:
            size = round(rng.uniform(3.2, 3.8), 1)
            override = [{"rule": "ABLATION_LESION_SIZE", "reason": "deep lesion: resection would need a major "
                                                                    "hepatectomy"}]
        data = self.decision("ablation", "resectable", operative_risk=rng.choice(("low", "high")),
                             lesion_count=rng.randint(1, 3), largest_lesion_cm=size)
        self.emit("mdt_decision", on, data, override=override, expect=State.ablation)

    def recurrence_decision(self, on: date) -> None:
        rng = self.rng
        self.recurrences += 1
        sites = self.recurrence_sites
        if sites == ["liver"] and self.recurrences <= 2 and self.primary in ("colorectal", "neuroendocrine"):
            roll = rng.random()
            if roll < 0.45:
                self.resection_decision(on, adjuvant=rng.random() < 0.3)
                return
            if roll < 0.65:
                self.ablation_decision(on)
                return
        if "peritoneum" in sites or "bone" in sites:
            self.extrahepatic = "uncontrollable"
        elif sites != ["liver"]:
            self.extrahepatic = "controllable"
        self.systemic_line(on)

    def systemic_line(self, on: date) -> None:
        """The next line of palliative systemic therapy, or best supportive care after the third."""
        rng = self.rng
        self.line += 1
        if self.line > 3 or (self.line == 3 and rng.random() < 0.4):
            self.emit("discharged", on, {"reason": "not_for_treatment"}, expect=State.discharged,
                      note="best supportive care")
            return
        if self.primary == "colorectal":
            # oxaliplatin first (FOLFOX or CAPOX), irinotecan next (FOLFIRI), then other agents
            used = set(self.regimens_used)
            if not used:
                regimen = rng.choices(("FOLFOX", "CAPOX", "FOLFIRI"), (50, 25, 25))[0]
            elif "FOLFIRI" not in used:
                regimen = "FOLFIRI"
            elif not used & {"FOLFOX", "CAPOX"}:
                regimen = "FOLFOX"
            else:
                regimen = "other"
            self.regimens_used.append(regimen)
            extra = self.biologic_fields(anti_egfr=self.line <= 2)
        else:
            regimen, extra = "other", {}
        self.regimen = regimen
        data = self.decision("systemic_therapy", "unresectable", regimen=regimen, **extra)
        self.emit("mdt_decision", on, data, expect=State.systemic_therapy)
        survival = timedelta(days=45 + int(rng.expovariate(1 / _PALLIATIVE_MEAN_DAYS)))
        if self.exit is None or self.exit[0] > on + survival:
            self.exit = (on + survival, "died", {})


# -- public API ----------------------------------------------------------------------------------


def pick_route(rng: random.Random) -> str:
    return rng.choices(tuple(ROUTES), tuple(ROUTES.values()))[0]


def walk_patient(index: int, rng: random.Random, today: date, policy: Policy = DEFAULT_POLICY, *,
                 route: str | None = None, referred_on: date | None = None,
                 span_days: int = REFERRAL_SPAN_DAYS) -> tuple[list[dict[str, Any]], State]:
    """One patient's events and the state they leave the patient in."""
    route = route or pick_route(rng)
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; known: {', '.join(ROUTES)}")
    if referred_on is None:
        referred_on = today - timedelta(days=rng.randint(0, span_days))
    walk = _Walk(index, rng, today, policy, route, referred_on)
    walk.run()
    return walk.events, walk.s.state


def generate_patient(index: int, rng: random.Random, today: date, policy: Policy = DEFAULT_POLICY, *,
                     route: str | None = None, referred_on: date | None = None,
                     span_days: int = REFERRAL_SPAN_DAYS) -> list[dict[str, Any]]:
    """The events (JSONL contract dicts) of one patient walking a realistic route, all on or before
    `today`. `route` (a key of ROUTES) and `referred_on` (within `span_days` before today) are drawn
    from `rng` unless given."""
    return walk_patient(index, rng, today, policy, route=route, referred_on=referred_on, span_days=span_days)[0]


def generate(patients: int, *, seed: int = 7, today: date, policy: Policy = DEFAULT_POLICY,
             first: int = 1, span_days: int = REFERRAL_SPAN_DAYS) -> Iterator[list[dict[str, Any]]]:
    """One list of events per patient (ids P000001, P000002, ...), deterministic for a seed."""
    for index in range(first, first + patients):
        yield generate_patient(index, patient_rng(seed, index), today, policy, span_days=span_days)


#: For `generate_covering`: which routes can be in each state at `today`, and how many days ago
#: such a patient was referred (a range to search).
_TARGETS: dict[State, tuple[tuple[str, ...], int, int]] = {
    State.adjuvant_chemo: (("perioperative_folfox", "resection_adjuvant"), 120, 300),
    State.neoadjuvant_chemo: (("perioperative_folfox", "perioperative_capox"), 25, 100),
    State.conversion_chemo: (("conversion",), 30, 200),
    State.portal_vein_embolization: (("pve_resection", "two_stage"), 25, 110),
    State.resection: (("upfront_resection", "resection_adjuvant", "neuroendocrine"), 22, 45),
    State.ablation: (("ablation",), 20, 40),
    State.systemic_therapy: (("systemic", "breast"), 40, 400),
    State.follow_up: (("upfront_resection", "ablation", "perioperative_capox"), 200, 1500),
    State.mdt_assessment: (tuple(ROUTES), 6, 24),
    State.referral: (tuple(ROUTES), 0, 8),
}


def generate_covering(patients: int, *, seed: int = 7, today: date, policy: Policy = DEFAULT_POLICY,
                      states: Iterable[State] = NON_TERMINAL_STATES,
                      span_days: int = REFERRAL_SPAN_DAYS) -> Iterator[list[dict[str, Any]]]:
    """Like `generate`, but the first patients are found (by a deterministic search) so that each
    of `states` holds at least one patient at `today` — for a small demo at every stage."""
    order = [state for state in _TARGETS if state in set(states)]
    index = 0
    for state in order[:patients]:
        index += 1
        routes, low, high = _TARGETS[state]
        for attempt in range(2000):
            rng = random.Random(f"cover:{seed}:{state}:{attempt}")
            route = rng.choice(routes)
            referred_on = today - timedelta(days=rng.randint(low, high))
            events, reached = walk_patient(index, rng, today, policy, route=route, referred_on=referred_on)
            if reached is state:
                yield events
                break
        else:  # pragma: no cover - the search windows make this practically impossible
            raise CohortError(f"no patient found in state {state} for today {today}")
    if patients > index:
        yield from generate(patients - index, seed=seed, today=today, policy=policy, first=index + 1,
                            span_days=span_days)


def dumps(event: dict[str, Any]) -> str:
    """One JSONL line (compact; ASCII only, so it never holds a raw tab or newline)."""
    return json.dumps(event, separators=(",", ":"))


def _write_part(part: str, first: int, patients: int, seed: int, today: date, policy: Policy,
                covering: bool) -> int:
    """Write patients first .. first + patients - 1 as "on<TAB>json" lines; returns the event count."""
    if covering:
        stream = generate_covering(patients, seed=seed, today=today, policy=policy)
    else:
        stream = generate(patients, seed=seed, today=today, policy=policy, first=first)
    count = 0
    with open(part, "w", encoding="ascii") as out:
        for events in stream:
            out.writelines(f"{event['on']}\t{dumps(event)}\n" for event in events)
            count += len(events)
    return count


def write_interleaved(path: str | os.PathLike[str], patients: int, *, seed: int = 7, today: date,
                      policy: Policy = DEFAULT_POLICY, covering: bool = False, workers: int = 1,
                      tmpdir: str | os.PathLike[str] | None = None, sort_memory: str = "256M") -> int:
    """Write every event of `patients` patients to `path` as JSONL in global date order (one
    patient's events keep their order), with bounded memory; returns the number of events.

    Patients are generated in `workers` processes, each writing a contiguous range of patients as
    "on<TAB>json" lines to a part file; `sort -s -t TAB -k1,1` over the parts in patient order
    sorts by date and, being stable, keeps (patient, position) order within a day; the prefix is
    then stripped. Output is identical whatever the number of workers."""
    target = Path(path)
    sort = shutil.which("sort")
    if sort is None:
        raise RuntimeError("write_interleaved needs the `sort` command (coreutils)")
    workers = max(1, min(workers, patients // 200 or 1))
    size, extra = divmod(patients, workers)
    chunks, first = [], 1
    for n in range(workers):
        count = size + (1 if n < extra else 0)
        chunks.append((first, count))
        first += count
    with tempfile.TemporaryDirectory(prefix="cohort-", dir=tmpdir or target.parent) as tmp:
        parts = [str(Path(tmp) / f"part{n:03d}.tsv") for n in range(workers)]
        jobs = [(part, first, count, seed, today, policy, covering and first == 1)
                for part, (first, count) in zip(parts, chunks, strict=True)]
        if workers == 1:
            total = _write_part(*jobs[0])
        else:
            with ProcessPoolExecutor(workers) as pool:
                total = sum(pool.map(_write_part, *zip(*jobs, strict=True)))
        ordered = Path(tmp) / "sorted.tsv"
        env = {**os.environ, "LC_ALL": "C"}
        subprocess.run([sort, "-s", "-t", "\t", "-k1,1", "-S", sort_memory, "-T", tmp, "-o", str(ordered),
                        *parts], check=True, env=env)
        for part in parts:
            os.unlink(part)
        with ordered.open("r", encoding="ascii") as src, target.open("w", encoding="ascii") as out:
            out.writelines(line.split("\t", 1)[1] for line in src)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pathway.demo.cohort",
                                     description="Write a synthetic cohort as JSONL in date order.")
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--today", type=date.fromisoformat, required=True, help="YYYY-MM-DD (clinic-local)")
    parser.add_argument("--covering", action="store_true", help="make sure every non-terminal state is held")
    parser.add_argument("--out", required=True, help="the JSONL file to write")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="generator processes")
    args = parser.parse_args(argv)
    if args.patients < 1:
        parser.error("--patients must be at least 1")
    started = time.perf_counter()
    count = write_interleaved(args.out, args.patients, seed=args.seed, today=args.today, covering=args.covering,
                              workers=args.workers)
    print(json.dumps({"patients": args.patients, "events": count, "seconds": round(time.perf_counter() - started, 2),
                      "file": args.out}))
    return 0


__all__ = [
    "REFERRAL_SPAN_DAYS",
    "ROUTES",
    "CohortError",
    "dumps",
    "generate",
    "generate_covering",
    "generate_patient",
    "patient_id",
    "patient_rng",
    "walk_patient",
    "write_interleaved",
]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
