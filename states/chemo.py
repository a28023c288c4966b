"""Chemotherapy: perioperative (pre- and post-operative), conversion and systemic phases.

Cycle lengths T5-T8; planned cycles T9-T10 (EORTC-08: 6 + 6 FOLFOX, 4 + 4 CAPOX); delays shift
every later cycle (T11-T12); restaging T13-T14 and T36; no anti-EGFR around surgery (NewEPOC);
RAS before anti-EGFR (ESMO-stmts, NICE-TA439); chemotherapy injures the liver (FLR-tab, Karoui).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from states.context import Ctx, effective_liver, plus
from states.facts import Phase, Snapshot
from states.plan import planned_postop, planned_preop
from states.rules import Reason, reason
from states.vocabulary import ANTI_EGFR, Biologic, EventType, PhaseKind, Response, State, StopReason

# -- transition conditions ---------------------------------------------------------------------


def last_planned_adjuvant_cycle(ctx: Ctx) -> bool:
    phase = ctx.s.phase
    return phase is not None and phase.cycles + 1 >= planned_postop(phase.regimen, ctx.policy)


def stopped_for_progression(ctx: Ctx) -> bool:
    return ctx.d.reason is StopReason.progression


def neoadjuvant_restaging_to_mdt(ctx: Ctx) -> bool:
    """Progression or not resectable -> MDT; planned cycles given but the remnant too small -> MDT."""
    d = ctx.d
    if d.response is Response.progression or d.resectable is False:
        return True
    return preop_cycles_done(ctx) and not remnant_adequate(ctx)


def neoadjuvant_restaging_to_resection(ctx: Ctx) -> bool:
    return preop_cycles_done(ctx) and remnant_adequate(ctx)


def preop_cycles_done(ctx: Ctx) -> bool:
    phase = ctx.s.phase
    return phase is not None and phase.cycles >= planned_preop(phase.regimen, ctx.policy)


def remnant_adequate(ctx: Ctx) -> bool:
    """This restaging's flr_percent, else the last decision's, against the threshold for the liver
    as it now is (a normal liver counts as chemo-injured after 12 weeks). No FLR at all: the MDT
    planned surgery without volumetry (minor extent, or FLR_NOT_RECORDED overridden), so it stands."""
    s, policy = ctx.s, ctx.policy
    decision = s.decision
    flr = ctx.d.flr_percent
    if flr is None and decision is not None:
        flr = decision.flr_percent
    if flr is None:
        return True
    liver = effective_liver(decision.liver if decision else "normal", s.chemo_days, policy)
    return bool(flr >= policy.threshold(liver))


def conversion_restaging_to_mdt(ctx: Ctx) -> bool:
    """Operate as soon as resectable, before lesions vanish (T16, Conv2m, DLM-prev)."""
    d = ctx.d
    return (
        d.response is Response.progression
        or d.resectable is True
        or d.response is Response.complete
        or d.disappeared_lesions > 0
    )


def systemic_restaging_to_mdt(ctx: Ctx) -> bool:
    d = ctx.d
    return d.resectable is True or d.response is Response.progression


# -- guards ------------------------------------------------------------------------------------


def cycle_guards(ctx: Ctx) -> list[Reason]:
    s, e, d, policy = ctx.s, ctx.e, ctx.d, ctx.policy
    phase = s.phase
    assert phase is not None  # cycle_given is only allowed in a chemotherapy state
    out: list[Reason] = []
    expected = phase.cycles + 1
    if d.cycle is not None and d.cycle != expected:
        out.append(reason("CYCLE_OUT_OF_SEQUENCE", fact=True, cycle=d.cycle, phase=phase.kind, expected=expected))
    if phase.last_cycle_on is not None:
        previous_regimen = phase.last_cycle_regimen or phase.regimen
        length = policy.cycle_length(previous_regimen)
        earliest = plus(phase.last_cycle_on, length - policy.cycle_early_tolerance_days)
        if e.on < earliest:
            out.append(reason("CYCLE_TOO_EARLY", days=(e.on - phase.last_cycle_on).days,
                              regimen=previous_regimen, length=length, earliest=earliest.isoformat()))
    if s.last_procedure_on is not None:
        earliest = plus(s.last_procedure_on, policy.adjuvant_min_days)
        if e.on < earliest:
            out.append(reason("ADJUVANT_TOO_EARLY", days=(e.on - s.last_procedure_on).days,
                              procedure_on=s.last_procedure_on.isoformat(), earliest=earliest.isoformat()))
    if phase.kind is PhaseKind.neoadjuvant:
        planned = planned_preop(phase.regimen, policy)
        if phase.cycles >= planned:
            out.append(reason("PREOP_CYCLES_EXCEEDED", planned=planned, given=phase.cycles))
    # A cycle naming an anti-EGFR antibody is checked like a decision. A cycle that inherits one
    # from its course is checked for RAS only: the MDT checked the rest, but a RAS result recorded
    # since (mutant, or withdrawn to unknown) must stop the next dose.
    named = d.biologic in ANTI_EGFR
    given = d.biologic or phase.biologic
    if named and phase.kind in (PhaseKind.neoadjuvant, PhaseKind.adjuvant):
        out.append(reason("ANTI_EGFR_PERIOPERATIVE", fact=True, biologic=d.biologic))
    if given in ANTI_EGFR and (s.ras or "unknown") != "wild_type":
        out.append(reason("ANTI_EGFR_RAS", fact=True, biologic=given, ras=s.ras or "unknown"))
    if named and s.sidedness == "right":
        out.append(reason("RIGHT_SIDED_ANTI_EGFR", biologic=d.biologic))
    return out


def restaging_guards(ctx: Ctx) -> list[Reason]:
    d = ctx.d
    if d.response is Response.complete or d.disappeared_lesions > 0:
        return [reason("DISAPPEARING_METASTASES")]
    return []


# -- effects -----------------------------------------------------------------------------------


def cycle_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    e, d, policy = ctx.e, ctx.d, ctx.policy
    phase = ctx.s.phase
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


def delay_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    """The next cycle moves (by `days`, or to `until`); later cycles follow it, so delays add up."""
    phase = s.phase
    assert phase is not None
    d = ctx.d
    next_due = d.until if d.until is not None else plus(phase.next_due, d.days)
    return s.replace(phase=_with(phase, next_due=next_due))


def stopped_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    phase = ctx.s.phase
    changes: dict[str, Any] = {}
    if ctx.d.reason is StopReason.progression:
        changes["progression"] = f"chemotherapy stopped for progression on {ctx.e.on.isoformat()}"
    if dest is State.follow_up and phase is not None:
        if phase.last_cycle_on is not None:
            end = plus(phase.last_cycle_on, ctx.policy.cycle_length(phase.last_cycle_regimen or phase.regimen))
        else:
            end = phase.started_on  # no adjuvant cycle given: the surgery or ablation date
        changes.update(treatment_end=end, surv_anchor=end)
    return s.replace(**changes)


def restaging_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    """Restaging during chemotherapy: progression status, breast systemic-first status, next scan."""
    e, d, policy = ctx.e, ctx.d, ctx.policy
    changes: dict[str, Any] = {"progression": progression_mark(ctx)}
    if ctx.s.state is State.systemic_therapy:
        changes["systemic_restaged_ok"] = d.response is not Response.progression
    phase = s.phase
    if phase is not None and dest is ctx.s.state:
        restaging_due = phase.restaging_due
        if phase.kind in (PhaseKind.conversion, PhaseKind.systemic):
            restaging_due = plus(e.on, policy.restaging_interval_days)
        changes["phase"] = _with(phase, restagings=phase.restagings + 1, restaging_due=restaging_due)
    return s.replace(**changes)


def progression_mark(ctx: Ctx) -> str | None:
    if ctx.d.response is Response.progression:
        return f"restaging on {ctx.e.on.isoformat()} showed progression"
    return None


def _with(phase: Phase, **changes: object) -> Phase:
    return dataclasses.replace(phase, **changes)  # type: ignore[arg-type]


_CHEMO = (State.neoadjuvant_chemo, State.conversion_chemo, State.adjuvant_chemo, State.systemic_therapy)

TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": EventType.cycle_given, "source": State.adjuvant_chemo, "dest": State.follow_up,
     "conditions": [last_planned_adjuvant_cycle]},
    *({"trigger": EventType.cycle_given, "source": state, "dest": None} for state in _CHEMO),
    *({"trigger": EventType.cycle_delayed, "source": state, "dest": None} for state in _CHEMO),
    {"trigger": EventType.chemo_stopped, "source": State.adjuvant_chemo, "dest": State.mdt_assessment,
     "conditions": [stopped_for_progression]},
    {"trigger": EventType.chemo_stopped, "source": State.adjuvant_chemo, "dest": State.follow_up},
    *(
        {"trigger": EventType.chemo_stopped, "source": state, "dest": State.mdt_assessment}
        for state in (State.neoadjuvant_chemo, State.conversion_chemo, State.systemic_therapy)
    ),
    {"trigger": EventType.restaging, "source": State.neoadjuvant_chemo, "dest": State.mdt_assessment,
     "conditions": [neoadjuvant_restaging_to_mdt]},
    {"trigger": EventType.restaging, "source": State.neoadjuvant_chemo, "dest": State.resection,
     "conditions": [neoadjuvant_restaging_to_resection]},
    {"trigger": EventType.restaging, "source": State.neoadjuvant_chemo, "dest": None},
    {"trigger": EventType.restaging, "source": State.conversion_chemo, "dest": State.mdt_assessment,
     "conditions": [conversion_restaging_to_mdt]},
    {"trigger": EventType.restaging, "source": State.conversion_chemo, "dest": None},
    {"trigger": EventType.restaging, "source": State.systemic_therapy, "dest": State.mdt_assessment,
     "conditions": [systemic_restaging_to_mdt]},
    {"trigger": EventType.restaging, "source": State.systemic_therapy, "dest": None},
]
