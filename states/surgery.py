"""Liver surgery, portal vein embolization and two-stage hepatectomy.

FLR thresholds (FLR-tab, Madoff), hypertrophy after PVE and its waiting time (KGR, PVO-kin,
PVE-S4, PVE/HVE), two-stage hepatectomy (TSH-Tsai, TSH-Passot), bevacizumab washout (Bev),
no partial palliative resection (Garden), high-volume centres (seed document, HPB-MDT).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from states.context import Ctx, plus
from states.facts import Phase, Snapshot
from states.plan import project
from states.rules import Reason, reason
from states.vocabulary import (
    BOOKED_KIND,
    Biologic,
    Bookable,
    EventType,
    Liver,
    Margin,
    PhaseKind,
    Procedure,
    Regimen,
    Response,
    Severity,
    State,
)

# -- transition conditions ---------------------------------------------------------------------


def is_two_stage_first(ctx: Ctx) -> bool:
    return ctx.d.procedure is Procedure.two_stage_first


def leaves_disease(ctx: Ctx) -> bool:
    """Exploration only, or an R2 margin: disease is left behind, so the MDT must decide again."""
    return ctx.d.procedure is Procedure.exploration_only or ctx.d.margin is Margin.R2


def wants_adjuvant(ctx: Ctx) -> bool:
    return bool(ctx.d.adjuvant)


def pve_threshold(ctx: Ctx) -> float:
    """In portal_vein_embolization the threshold is the one for the liver at the last MDT decision."""
    decision = ctx.s.decision
    liver = decision.liver_effective if decision is not None else Liver.normal
    return ctx.policy.threshold(liver)


def pve_restaging_to_resection(ctx: Ctx) -> bool:
    d = ctx.d
    return (
        d.response is not Response.progression
        and d.flr_percent is not None
        and d.flr_percent >= pve_threshold(ctx)
    )


def pve_restaging_to_mdt(ctx: Ctx) -> bool:
    """Progression; or a remnant still too small once the wait since PVE (or stage one) is over."""
    d, s = ctx.d, ctx.s
    if d.response is Response.progression:
        return True
    if d.flr_percent is None or d.flr_percent >= pve_threshold(ctx):
        return False
    if s.pve_anchor is None:  # PVE not done yet: the small remnant is why it is planned
        return False
    return (ctx.e.on - s.pve_anchor).days >= ctx.policy.pve_max_wait_days


# -- guards ------------------------------------------------------------------------------------


def washout(ctx: Ctx, surgery_on: date, *, fact: bool) -> list[Reason]:
    """Bevacizumab: at least 28 days (label), 42 without override (NCCN) before surgery (T18)."""
    s, policy = ctx.s, ctx.policy
    if s.last_bev_on is None:
        return []
    days = (surgery_on - s.last_bev_on).days
    if days >= policy.bevacizumab_washout_days:
        return []
    values: dict[str, Any] = {
        "surgery_on": surgery_on.isoformat(),
        "days": days,
        "last_dose": s.last_bev_on.isoformat(),
        "earliest": plus(s.last_bev_on, policy.bevacizumab_washout_days).isoformat(),
    }
    if fact or days >= policy.bevacizumab_label_min_days:
        return [reason("BEVACIZUMAB_WASHOUT", severity=Severity.confirm, **values)]
    return [reason("BEVACIZUMAB_WASHOUT", **values)]


def booked_guards(ctx: Ctx) -> list[Reason]:
    if ctx.d.what is Bookable.surgery:
        return washout(ctx, ctx.d.for_, fact=False)
    return []


def booked_target(ctx: Ctx) -> str | None:
    """The key of the pending reminder a booking moves, or None (then the booking is not allowed)."""
    kind = BOOKED_KIND[ctx.d.what]
    for planned in project(ctx.s, ctx.policy):
        if planned.kind is kind:
            return planned.key
    return None


def surgery_guards(ctx: Ctx) -> list[Reason]:
    out: list[Reason] = []
    if not ctx.s.high_volume_centre:
        out.append(reason("LOW_VOLUME_CENTRE"))
    out.extend(washout(ctx, ctx.e.on, fact=True))
    return out


# -- effects -----------------------------------------------------------------------------------


def booked_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    key = booked_target(ctx)
    assert key is not None  # checked before acceptance
    bookings = tuple((k, v) for k, v in s.bookings if k != key) + ((key, ctx.d.for_),)
    return s.replace(bookings=bookings)


def pve_performed_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    on = ctx.e.on
    return s.replace(pve_due_planned=False, pve_anchor=on, flr_scan_due=plus(on, ctx.policy.flr_scan_days))


def pve_restaging_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    d, e = ctx.d, ctx.e
    changes: dict[str, Any] = {}
    changes["progression"] = (
        f"restaging on {e.on.isoformat()} showed progression" if d.response is Response.progression else None
    )
    if dest is State.portal_vein_embolization and d.flr_percent is not None:
        if s.pve_anchor is not None:  # remnant still too small: scan again (KGR)
            changes.update(flr_scan_seq=s.flr_scan_seq + 1, flr_scan_due=plus(e.on, ctx.policy.flr_rescan_days))
        else:
            changes.update(flr_scan_due=None)
    return s.replace(**changes)


def surgery_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    d, e, policy = ctx.d, ctx.e, ctx.policy
    changes: dict[str, Any] = {"last_procedure_on": e.on}
    if d.procedure is not Procedure.exploration_only:
        changes["progression"] = None  # the window of PROGRESSION_ON_CHEMO restarts at liver surgery
    if d.procedure not in (Procedure.exploration_only, Procedure.two_stage_first):
        changes["treatment_end"] = e.on  # also after an R2 (e.g. NET debulking): a later watch starts here
    if d.procedure is Procedure.two_stage_first:
        changes.update(pve_anchor=e.on, flr_scan_due=plus(e.on, policy.flr_scan_days))
    if d.procedure is Procedure.resection_with_ablation and dest in (State.adjuvant_chemo, State.follow_up):
        changes.update(ablation_scan_seq=s.ablation_scan_seq + 1, ablation_scan_due=plus(e.on, policy.ablation_scan_days))
    changes.update(after_treatment(ctx, s, dest))
    return s.replace(**changes)


def after_treatment(ctx: Ctx, s: Snapshot, dest: State) -> dict[str, Any]:
    """After liver surgery or ablation: adjuvant chemotherapy (the last decision's regimen, no
    biologic; first cycle + 42 days, T20) or surveillance from the procedure date (T34)."""
    e, policy = ctx.e, ctx.policy
    if dest is State.adjuvant_chemo:
        regimen = s.decision.regimen if s.decision is not None else Regimen.FOLFOX
        seq = s.phase_seq + 1
        return {
            "phase_seq": seq,
            "phase": Phase(
                seq=seq,
                kind=PhaseKind.adjuvant,
                regimen=regimen,
                biologic=Biologic.none,
                started_on=e.on,
                next_due=plus(e.on, policy.first_adjuvant_cycle_days),
            ),
        }
    if dest is State.follow_up:
        return {"treatment_end": e.on, "surv_anchor": e.on}
    return {}


TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": EventType.surgery, "source": State.resection, "dest": State.portal_vein_embolization,
     "conditions": [is_two_stage_first]},
    {"trigger": EventType.surgery, "source": State.resection, "dest": State.mdt_assessment,
     "conditions": [leaves_disease]},
    {"trigger": EventType.surgery, "source": State.resection, "dest": State.adjuvant_chemo,
     "conditions": [wants_adjuvant]},
    {"trigger": EventType.surgery, "source": State.resection, "dest": State.follow_up},
    {"trigger": EventType.pve_performed, "source": State.portal_vein_embolization, "dest": None},
    {"trigger": EventType.restaging, "source": State.portal_vein_embolization, "dest": State.mdt_assessment,
     "conditions": [pve_restaging_to_mdt]},
    {"trigger": EventType.restaging, "source": State.portal_vein_embolization, "dest": State.resection,
     "conditions": [pve_restaging_to_resection]},
    {"trigger": EventType.restaging, "source": State.portal_vein_embolization, "dest": None},
]
