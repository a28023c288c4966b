"""Liver surgery, portal vein embolization and two-stage hepatectomy.

FLR thresholds (FLR-tab, Madoff), hypertrophy after PVE and its waiting time (KGR, PVO-kin,
PVE-S4, PVE/HVE), two-stage hepatectomy (TSH-Tsai, TSH-Passot), bevacizumab washout (Bev),
no partial palliative resection (Garden), high-volume centres (seed document, HPB-MDT).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from states.context import Ctx, plus
from states.data import BookedData, EmptyData, RestagingData, SurgeryData
from states.facts import Phase, Snapshot
from states.policy import Policy
from states.rules import Reason, Rule
from states.stage import EventSpec, Lane, ReminderSpec, Stage, Transition
from states.vocabulary import (
    BOOKED_KIND,
    NON_TERMINAL_STATES,
    Biologic,
    Bookable,
    EventType,
    Liver,
    Margin,
    PhaseKind,
    Procedure,
    Regimen,
    ReminderKind,
    Response,
    Severity,
    State,
)

# -- rules ---------------------------------------------------------------------------------------

BEVACIZUMAB_WASHOUT = Rule(
    "BEVACIZUMAB_WASHOUT",
    Severity.block,
    "surgery booked under 28 days after the last bevacizumab dose (block), 28-41 days (confirm); "
    "the surgery fact under 42 days (confirm)",
    "Surgery on {surgery_on} is {days} days after the last bevacizumab dose ({last_dose}); "
    "the earliest date without override is {earliest}.",
    "Bev (NCCN: 6 weeks; FDA label: at least 28 days)",
)

LOW_VOLUME_CENTRE = Rule(
    "LOW_VOLUME_CENTRE",
    Severity.confirm,
    "surgery where the referral says the centre is not high-volume",
    "Liver surgery at a low-volume centre carries more complications and deaths; refer to a "
    "high-volume HPB centre (or confirm with a reason).",
    "Seed document; HPB-MDT (tertiary centre referral); Garden et al., Gut 2006",
)


# -- transition conditions ---------------------------------------------------------------------


def is_two_stage_first(ctx: Ctx[SurgeryData]) -> bool:
    return ctx.data.procedure is Procedure.two_stage_first


def leaves_disease(ctx: Ctx[SurgeryData]) -> bool:
    """Exploration only, or an R2 margin: disease is left behind, so the MDT must decide again."""
    return ctx.data.procedure is Procedure.exploration_only or ctx.data.margin is Margin.R2


def wants_adjuvant(ctx: Ctx[Any]) -> bool:
    """Surgery or ablation followed by adjuvant chemotherapy (`adjuvant: true`)."""
    return bool(ctx.data.adjuvant)


def pve_threshold(ctx: Ctx[RestagingData]) -> float:
    """In portal_vein_embolization the threshold is the one for the liver at the last MDT decision."""
    decision = ctx.snapshot.decision
    liver = decision.liver_effective if decision is not None else Liver.normal
    return ctx.policy.threshold(liver)


def pve_restaging_to_resection(ctx: Ctx[RestagingData]) -> bool:
    d = ctx.data
    return (
        d.response is not Response.progression
        and d.flr_percent is not None
        and d.flr_percent >= pve_threshold(ctx)
    )


def pve_restaging_to_mdt(ctx: Ctx[RestagingData]) -> bool:
    """Progression; or a remnant still too small once the wait since PVE (or stage one) is over."""
    d, s = ctx.data, ctx.snapshot
    if d.response is Response.progression:
        return True
    if d.flr_percent is None or d.flr_percent >= pve_threshold(ctx):
        return False
    if s.pve_anchor is None:  # PVE not done yet: the small remnant is why it is planned
        return False
    return (ctx.event.on - s.pve_anchor).days >= ctx.policy.pve_max_wait_days


# -- guards ------------------------------------------------------------------------------------


def washout(ctx: Ctx[Any], surgery_on: date, *, fact: bool) -> list[Reason]:
    """Bevacizumab: at least 28 days (label), 42 without override (NCCN) before surgery (T18)."""
    s, policy = ctx.snapshot, ctx.policy
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
        return [BEVACIZUMAB_WASHOUT.reason(severity=Severity.confirm, **values)]
    return [BEVACIZUMAB_WASHOUT.reason(**values)]


def booked_guards(ctx: Ctx[BookedData]) -> list[Reason]:
    if ctx.data.what is Bookable.surgery:
        return washout(ctx, ctx.data.for_, fact=False)
    return []


def booked_target(ctx: Ctx[BookedData]) -> str | None:
    """The key of the pending reminder a booking moves, or None (then the booking is not allowed)."""
    kind = BOOKED_KIND[ctx.data.what]
    for planned in ctx.definition.project(ctx.snapshot, ctx.policy):
        if planned.kind is kind:
            return planned.key
    return None


def surgery_guards(ctx: Ctx[SurgeryData]) -> list[Reason]:
    out: list[Reason] = []
    if not ctx.snapshot.high_volume_centre:
        out.append(LOW_VOLUME_CENTRE.reason())
    out.extend(washout(ctx, ctx.event.on, fact=True))
    return out


# -- effects -----------------------------------------------------------------------------------


def booked_effect(ctx: Ctx[BookedData], s: Snapshot, dest: State) -> Snapshot:
    key = booked_target(ctx)
    assert key is not None  # checked before acceptance
    bookings = tuple((k, v) for k, v in s.bookings if k != key) + ((key, ctx.data.for_),)
    return s.replace(bookings=bookings)


def pve_performed_effect(ctx: Ctx[EmptyData], s: Snapshot, dest: State) -> Snapshot:
    on = ctx.event.on
    return s.replace(pve_due_planned=False, pve_anchor=on, flr_scan_due=plus(on, ctx.policy.flr_scan_days))


def pve_restaging_effect(ctx: Ctx[RestagingData], s: Snapshot, dest: State) -> Snapshot:
    d, e = ctx.data, ctx.event
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


def surgery_effect(ctx: Ctx[SurgeryData], s: Snapshot, dest: State) -> Snapshot:
    d, e, policy = ctx.data, ctx.event, ctx.policy
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


def after_treatment(ctx: Ctx[Any], s: Snapshot, dest: State) -> dict[str, Any]:
    """After liver surgery or ablation: adjuvant chemotherapy (the last decision's regimen, no
    biologic; first cycle + 42 days, T20) or surveillance from the procedure date (T34)."""
    e, policy = ctx.event, ctx.policy
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


def entering_surgery_or_pve(ctx: Ctx[Any], dest: State) -> Mapping[str, Any]:
    """A new stay in resection or portal_vein_embolization: its own reminder keys; PVE is planned
    when an MDT decision sends the patient there (not after the first stage of a two-stage)."""
    s = ctx.snapshot
    if dest is State.resection:
        return {"resection_seq": s.resection_seq + 1}
    if dest is State.portal_vein_embolization:
        return {"pve_seq": s.pve_seq + 1, "pve_due_planned": ctx.event.type is EventType.mdt_decision,
                "pve_anchor": None, "flr_scan_seq": 1, "flr_scan_due": None}
    return {}


# -- the care plan ---------------------------------------------------------------------------------


def plan_surgery(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    """Surgery: 2 weeks after entering resection, 4 weeks after the last cycle (T17), 6 weeks after
    the last bevacizumab dose (T18), whichever is last."""
    due = plus(s.entered_on, policy.surgery_after_entry_days)
    if s.last_cycle_on is not None:
        due = max(due, plus(s.last_cycle_on, policy.surgery_after_last_cycle_days))
    if s.last_bev_on is not None:
        due = max(due, plus(s.last_bev_on, policy.bevacizumab_washout_days))
    yield str(s.resection_seq), due, "liver surgery"


def plan_pve(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    if s.pve_due_planned:
        yield str(s.pve_seq), plus(s.entered_on, policy.pve_due_days), "portal vein embolization"


def plan_flr_scan(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    """Volumetry 4 weeks after PVE or the first stage (T23), again while the remnant is small (KGR)."""
    if s.flr_scan_due is not None:
        yield f"{s.pve_seq}:{s.flr_scan_seq}", s.flr_scan_due, "CT volumetry of the future liver remnant"


STAGE = Stage(
    name="liver surgery and portal vein embolization",
    events=(
        EventSpec(EventType.booked, BookedData, "Booked", Lane.mdt, "A procedure or scan was booked for a date.",
                  guard=booked_guards, effect=booked_effect),
        EventSpec(EventType.pve_performed, EmptyData, "PVE performed", Lane.procedure,
                  "Portal vein embolization was performed.", effect=pve_performed_effect, fact=True),
        EventSpec(EventType.surgery, SurgeryData, "Liver surgery", Lane.procedure, "Liver surgery was performed.",
                  guard=surgery_guards, effect=surgery_effect, fact=True),
    ),
    transitions=(
        *(Transition(EventType.booked, state, None) for state in NON_TERMINAL_STATES),
        Transition(EventType.surgery, State.resection, State.portal_vein_embolization, when=is_two_stage_first),
        Transition(EventType.surgery, State.resection, State.mdt_assessment, when=leaves_disease),
        Transition(EventType.surgery, State.resection, State.adjuvant_chemo, when=wants_adjuvant),
        Transition(EventType.surgery, State.resection, State.follow_up),
        Transition(EventType.pve_performed, State.portal_vein_embolization, None),
        Transition(EventType.restaging, State.portal_vein_embolization, State.mdt_assessment,
                   when=pve_restaging_to_mdt),
        Transition(EventType.restaging, State.portal_vein_embolization, State.resection,
                   when=pve_restaging_to_resection),
        Transition(EventType.restaging, State.portal_vein_embolization, None),
    ),
    rules=(BEVACIZUMAB_WASHOUT, LOW_VOLUME_CENTRE),
    reminders=(
        ReminderSpec(ReminderKind.surgery_due, "Liver surgery due", "surgery", Lane.procedure,
                     frozenset({EventType.surgery}), frozenset({State.resection}), plan_surgery),
        ReminderSpec(ReminderKind.pve_due, "PVE due", "flr", Lane.procedure,
                     frozenset({EventType.pve_performed}), frozenset({State.portal_vein_embolization}), plan_pve),
        ReminderSpec(ReminderKind.flr_scan, "Volumetry CT", "flr", Lane.scan,
                     frozenset({EventType.restaging}), frozenset({State.portal_vein_embolization}), plan_flr_scan),
    ),
    state_effects={(EventType.restaging, State.portal_vein_embolization): pve_restaging_effect},
    on_state_change=entering_surgery_or_pve,
)
