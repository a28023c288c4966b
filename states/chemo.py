"""Chemotherapy: perioperative (pre- and post-operative), conversion and systemic phases.

Cycle lengths T5-T8; planned cycles T9-T10 (EORTC-08: 6 + 6 FOLFOX, 4 + 4 CAPOX); delays shift
every later cycle (T11-T12); restaging T13-T14 and T36; no anti-EGFR around surgery (NewEPOC);
RAS before anti-EGFR (ESMO-stmts, NICE-TA439); chemotherapy injures the liver (FLR-tab, Karoui).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from states.context import Ctx, effective_liver, plus
from states.data import ChemoStoppedData, CycleDelayedData, CycleGivenData, RestagingData
from states.facts import Phase, Snapshot
from states.planning import planned_postop, planned_preop
from states.policy import Policy
from states.referral import ANTI_EGFR_PERIOPERATIVE, ANTI_EGFR_RAS, RIGHT_SIDED_ANTI_EGFR
from states.rules import Reason, Rule
from states.stage import EventSpec, Lane, ReminderSpec, Stage, Transition
from states.vocabulary import (
    ANTI_EGFR,
    CHEMO_STATES,
    Biologic,
    EventType,
    PhaseKind,
    ReminderKind,
    Response,
    Severity,
    State,
    StopReason,
)

# -- rules ---------------------------------------------------------------------------------------

CYCLE_OUT_OF_SEQUENCE = Rule(
    "CYCLE_OUT_OF_SEQUENCE",
    Severity.block,
    "cycle given and not the next number in this phase",
    "Cycle {cycle} is out of sequence: the next cycle of this {phase} phase is {expected}; "
    "record the missing cycle first.",
    "docs/contract.md section 3 (cycle numbering)",
    always_block=True,  # on a fact too: the missing cycle is to be recorded first
)

CYCLE_TOO_EARLY = Rule(
    "CYCLE_TOO_EARLY",
    Severity.confirm,
    "a cycle given less than (cycle length - 3) days after the previous cycle of the same phase",
    "This cycle is {days} days after the previous one; the {regimen} cycle is {length} days "
    "(earliest {earliest}); confirm with a reason if it is intended.",
    "T5-T8 (cycle lengths: EORTC-13, eviQ, NewEPOC)",
)

ADJUVANT_TOO_EARLY = Rule(
    "ADJUVANT_TOO_EARLY",
    Severity.confirm,
    "a chemotherapy cycle less than 28 days after liver surgery or ablation",
    "This cycle is {days} days after liver surgery or ablation ({procedure_on}); wait until "
    "{earliest} for wound healing (or confirm with a reason).",
    "Bev (label: at least 28 days and wound healed; NCCN 6-8 weeks); T19, T20",
)

PREOP_CYCLES_EXCEEDED = Rule(
    "PREOP_CYCLES_EXCEEDED",
    Severity.confirm,
    "a pre-operative (neoadjuvant) cycle beyond the planned number",
    "{planned} pre-operative cycles were planned and {given} are given; more cycles raise "
    "operative morbidity: restage and operate (or confirm with a reason).",
    "EORTC-08 (6 pre-op cycles); Karoui (Ann Surg 2006); TSH-Passot",
)

DISAPPEARING_METASTASES = Rule(
    "DISAPPEARING_METASTASES",
    Severity.advice,
    "restaging with response complete or disappeared lesions",
    "Lesions have disappeared on imaging; complete response is not cure: confirm with MRI and "
    "resect or ablate the original sites.",
    "DLM-JCO (Benoist et al., J Clin Oncol 2006); DLM-SR; DLM-prev",
)


# -- transition conditions ---------------------------------------------------------------------


def last_planned_adjuvant_cycle(ctx: Ctx[CycleGivenData]) -> bool:
    phase = ctx.snapshot.phase
    return phase is not None and phase.cycles + 1 >= planned_postop(phase.regimen, ctx.policy)


def stopped_for_progression(ctx: Ctx[ChemoStoppedData]) -> bool:
    return ctx.data.reason is StopReason.progression


def neoadjuvant_restaging_to_mdt(ctx: Ctx[RestagingData]) -> bool:
    """Progression or not resectable -> MDT; planned cycles given but the remnant too small -> MDT."""
    d = ctx.data
    if d.response is Response.progression or d.resectable is False:
        return True
    return preop_cycles_done(ctx) and not remnant_adequate(ctx)


def neoadjuvant_restaging_to_resection(ctx: Ctx[RestagingData]) -> bool:
    return preop_cycles_done(ctx) and remnant_adequate(ctx)


def preop_cycles_done(ctx: Ctx[Any]) -> bool:
    phase = ctx.snapshot.phase
    return phase is not None and phase.cycles >= planned_preop(phase.regimen, ctx.policy)


def remnant_adequate(ctx: Ctx[RestagingData]) -> bool:
    """This restaging's flr_percent, else the last decision's, against the threshold for the liver
    as it now is (a normal liver counts as chemo-injured after 12 weeks). No FLR at all: the MDT
    planned surgery without volumetry (minor extent, or FLR_NOT_RECORDED overridden), so it stands."""
    s, policy = ctx.snapshot, ctx.policy
    decision = s.decision
    flr = ctx.data.flr_percent
    if flr is None and decision is not None:
        flr = decision.flr_percent
    if flr is None:
        return True
    liver = effective_liver(decision.liver if decision else "normal", s.chemo_days, policy)
    return bool(flr >= policy.threshold(liver))


def conversion_restaging_to_mdt(ctx: Ctx[RestagingData]) -> bool:
    """Operate as soon as resectable, before lesions vanish (T16, Conv2m, DLM-prev)."""
    d = ctx.data
    return (
        d.response is Response.progression
        or d.resectable is True
        or d.response is Response.complete
        or d.disappeared_lesions > 0
    )


def systemic_restaging_to_mdt(ctx: Ctx[RestagingData]) -> bool:
    d = ctx.data
    return d.resectable is True or d.response is Response.progression


# -- guards ------------------------------------------------------------------------------------


def cycle_guards(ctx: Ctx[CycleGivenData]) -> list[Reason]:
    s, e, d, policy = ctx.snapshot, ctx.event, ctx.data, ctx.policy
    phase = s.phase
    assert phase is not None  # cycle_given is only allowed in a chemotherapy state
    out: list[Reason] = []
    expected = phase.cycles + 1
    if d.cycle is not None and d.cycle != expected:
        out.append(CYCLE_OUT_OF_SEQUENCE.reason(fact=True, cycle=d.cycle, phase=phase.kind, expected=expected))
    if phase.last_cycle_on is not None:
        previous_regimen = phase.last_cycle_regimen or phase.regimen
        length = policy.cycle_length(previous_regimen)
        earliest = plus(phase.last_cycle_on, length - policy.cycle_early_tolerance_days)
        if e.on < earliest:
            out.append(CYCLE_TOO_EARLY.reason(days=(e.on - phase.last_cycle_on).days,
                              regimen=previous_regimen, length=length, earliest=earliest.isoformat()))
    if s.last_procedure_on is not None:
        earliest = plus(s.last_procedure_on, policy.adjuvant_min_days)
        if e.on < earliest:
            out.append(ADJUVANT_TOO_EARLY.reason(days=(e.on - s.last_procedure_on).days,
                              procedure_on=s.last_procedure_on.isoformat(), earliest=earliest.isoformat()))
    if phase.kind is PhaseKind.neoadjuvant:
        planned = planned_preop(phase.regimen, policy)
        if phase.cycles >= planned:
            out.append(PREOP_CYCLES_EXCEEDED.reason(planned=planned, given=phase.cycles))
    # A cycle naming an anti-EGFR antibody is checked like a decision. A cycle that inherits one
    # from its course is checked for RAS only: the MDT checked the rest, but a RAS result recorded
    # since (mutant, or withdrawn to unknown) must stop the next dose.
    named = d.biologic in ANTI_EGFR
    given = d.biologic or phase.biologic
    if named and phase.kind in (PhaseKind.neoadjuvant, PhaseKind.adjuvant):
        out.append(ANTI_EGFR_PERIOPERATIVE.reason(fact=True, biologic=d.biologic))
    if given in ANTI_EGFR and (s.ras or "unknown") != "wild_type":
        out.append(ANTI_EGFR_RAS.reason(fact=True, biologic=given, ras=s.ras or "unknown"))
    if named and s.sidedness == "right":
        out.append(RIGHT_SIDED_ANTI_EGFR.reason(biologic=d.biologic))
    return out


def restaging_guards(ctx: Ctx[RestagingData]) -> list[Reason]:
    d = ctx.data
    if d.response is Response.complete or d.disappeared_lesions > 0:
        return [DISAPPEARING_METASTASES.reason()]
    return []


# -- effects -----------------------------------------------------------------------------------


def cycle_effect(ctx: Ctx[CycleGivenData], s: Snapshot, dest: State) -> Snapshot:
    e, d, policy = ctx.event, ctx.data, ctx.policy
    phase = ctx.snapshot.phase
    assert phase is not None
    regimen = d.regimen or phase.regimen
    biologic = d.biologic or phase.biologic
    length = policy.cycle_length(regimen)
    restaging_due = phase.restaging_due
    if restaging_due is None and phase.kind in (PhaseKind.conversion, PhaseKind.systemic):
        restaging_due = plus(e.on, policy.restaging_interval_days)  # first cycle + 56 (T13)
    phase = Phase(
        seq=phase.seq,
        kind=phase.kind,
        regimen=phase.regimen,
        biologic=phase.biologic,
        started_on=phase.started_on,
        next_due=plus(e.on, length),
        cycles=phase.cycles + 1,
        last_cycle_on=e.on,
        last_cycle_regimen=regimen,
        restagings=phase.restagings,
        restaging_due=restaging_due,
    )
    changes: dict[str, Any] = {
        "phase": phase,
        "chemo_days": s.chemo_days + length,
        "last_cycle_on": e.on,
    }
    if biologic is Biologic.bevacizumab:
        changes["last_bev_on"] = e.on
    if dest is State.follow_up:  # the last planned adjuvant cycle: treatment ends a cycle later
        end = plus(e.on, length)
        changes.update(phase=None, treatment_end=end, surv_anchor=end)
    return s.replace(**changes)


def delay_effect(ctx: Ctx[CycleDelayedData], s: Snapshot, dest: State) -> Snapshot:
    """The next cycle moves (by `days`, or to `until`); later cycles follow it, so delays add up."""
    phase = s.phase
    assert phase is not None
    d = ctx.data
    if d.until is not None:
        next_due = d.until
    else:
        assert d.days is not None  # CycleDelayedData holds exactly one of `days` and `until`
        next_due = plus(phase.next_due, d.days)
    return s.replace(phase=_with(phase, next_due=next_due))


def stopped_effect(ctx: Ctx[ChemoStoppedData], s: Snapshot, dest: State) -> Snapshot:
    phase = ctx.snapshot.phase
    changes: dict[str, Any] = {}
    if ctx.data.reason is StopReason.progression:
        changes["progression"] = f"chemotherapy stopped for progression on {ctx.event.on.isoformat()}"
    if dest is State.follow_up and phase is not None:
        if phase.last_cycle_on is not None:
            end = plus(phase.last_cycle_on, ctx.policy.cycle_length(phase.last_cycle_regimen or phase.regimen))
        else:
            end = phase.started_on  # no adjuvant cycle given: the surgery or ablation date
        changes.update(treatment_end=end, surv_anchor=end)
    return s.replace(**changes)


def restaging_effect(ctx: Ctx[RestagingData], s: Snapshot, dest: State) -> Snapshot:
    """Restaging during chemotherapy: progression status, breast systemic-first status, next scan."""
    e, d, policy = ctx.event, ctx.data, ctx.policy
    changes: dict[str, Any] = {"progression": progression_mark(ctx)}
    if ctx.snapshot.state is State.systemic_therapy:
        changes["systemic_restaged_ok"] = d.response is not Response.progression
    phase = s.phase
    if phase is not None and dest is ctx.snapshot.state:
        restaging_due = phase.restaging_due
        if phase.kind in (PhaseKind.conversion, PhaseKind.systemic):
            restaging_due = plus(e.on, policy.restaging_interval_days)
        changes["phase"] = _with(phase, restagings=phase.restagings + 1, restaging_due=restaging_due)
    return s.replace(**changes)


def progression_mark(ctx: Ctx[RestagingData]) -> str | None:
    if ctx.data.response is Response.progression:
        return f"restaging on {ctx.event.on.isoformat()} showed progression"
    return None


def _with(phase: Phase, **changes: object) -> Phase:
    return dataclasses.replace(phase, **changes)  # type: ignore[arg-type]


def leaving_chemotherapy(ctx: Ctx[Any], dest: State) -> Mapping[str, Any]:
    """The course of chemotherapy ends when the patient leaves the chemotherapy states."""
    return {} if dest in CHEMO_STATES else {"phase": None}


# -- the care plan ---------------------------------------------------------------------------------


def _restaging_now(s: Snapshot, policy: Policy) -> bool:
    """The planned pre-operative cycles are given: restage instead of another cycle (T14)."""
    phase = s.phase
    return phase is not None and phase.kind is PhaseKind.neoadjuvant and phase.cycles >= planned_preop(
        phase.regimen, policy)


def plan_cycle(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    """The next cycle of the course, delays applied (T5-T12), "n of planned" where a plan exists."""
    phase = s.phase
    if phase is None or _restaging_now(s, policy):
        return
    n = phase.cycles + 1
    of = ""
    if phase.kind is PhaseKind.neoadjuvant:
        of = f" of {planned_preop(phase.regimen, policy)}"
    elif phase.kind is PhaseKind.adjuvant:
        of = f" of {planned_postop(phase.regimen, policy)}"
    yield f"{phase.seq}:{n}", phase.next_due, f"{phase.kind} {phase.regimen} cycle {n}{of}"


def plan_restaging(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    """After the planned pre-operative cycles (T14); every 8 weeks on conversion or systemic
    therapy (T13, T36)."""
    phase = s.phase
    if phase is None:
        return
    discriminator = f"{phase.seq}:{phase.restagings + 1}"
    if _restaging_now(s, policy):
        last = phase.last_cycle_on or phase.started_on
        yield discriminator, plus(last, policy.preop_restaging_days), "restaging after pre-operative chemotherapy"
    elif phase.restaging_due is not None:
        yield discriminator, phase.restaging_due, f"restaging during {phase.kind} therapy"


_CHEMO = (State.neoadjuvant_chemo, State.conversion_chemo, State.adjuvant_chemo, State.systemic_therapy)

STAGE = Stage(
    name="chemotherapy",
    events=(
        EventSpec(EventType.cycle_given, CycleGivenData, "Cycle given", Lane.chemo,
                  "A chemotherapy cycle was given.", guard=cycle_guards, effect=cycle_effect, fact=True),
        EventSpec(EventType.cycle_delayed, CycleDelayedData, "Cycle delayed", Lane.chemo,
                  "The next cycle is postponed (by days, or until a date).", effect=delay_effect),
        EventSpec(EventType.chemo_stopped, ChemoStoppedData, "Chemotherapy stopped", Lane.chemo,
                  "Chemotherapy stopped.", effect=stopped_effect),
        EventSpec(EventType.restaging, RestagingData, "Restaging", Lane.scan,
                  "A restaging scan was reported.", guard=restaging_guards, effect=restaging_effect),
    ),
    transitions=(
        Transition(EventType.cycle_given, State.adjuvant_chemo, State.follow_up, when=last_planned_adjuvant_cycle),
        *(Transition(EventType.cycle_given, state, None) for state in _CHEMO),
        *(Transition(EventType.cycle_delayed, state, None) for state in _CHEMO),
        Transition(EventType.chemo_stopped, State.adjuvant_chemo, State.mdt_assessment,
                   when=stopped_for_progression),
        Transition(EventType.chemo_stopped, State.adjuvant_chemo, State.follow_up),
        *(Transition(EventType.chemo_stopped, state, State.mdt_assessment)
          for state in (State.neoadjuvant_chemo, State.conversion_chemo, State.systemic_therapy)),
        Transition(EventType.restaging, State.neoadjuvant_chemo, State.mdt_assessment,
                   when=neoadjuvant_restaging_to_mdt),
        Transition(EventType.restaging, State.neoadjuvant_chemo, State.resection,
                   when=neoadjuvant_restaging_to_resection),
        Transition(EventType.restaging, State.neoadjuvant_chemo, None),
        Transition(EventType.restaging, State.conversion_chemo, State.mdt_assessment,
                   when=conversion_restaging_to_mdt),
        Transition(EventType.restaging, State.conversion_chemo, None),
        Transition(EventType.restaging, State.systemic_therapy, State.mdt_assessment,
                   when=systemic_restaging_to_mdt),
        Transition(EventType.restaging, State.systemic_therapy, None),
    ),
    rules=(CYCLE_OUT_OF_SEQUENCE, CYCLE_TOO_EARLY, ADJUVANT_TOO_EARLY, PREOP_CYCLES_EXCEEDED,
           DISAPPEARING_METASTASES),
    reminders=(
        ReminderSpec(ReminderKind.chemo_cycle, "Chemotherapy cycle", "chemo", Lane.chemo,
                     frozenset({EventType.cycle_given}), frozenset(_CHEMO), plan_cycle),
        ReminderSpec(ReminderKind.restaging_scan, "Restaging scan", "restaging", Lane.scan,
                     frozenset({EventType.restaging}), frozenset(_CHEMO), plan_restaging),
    ),
    on_state_change=leaving_chemotherapy,
)
