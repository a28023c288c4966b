"""Referral and the HPB MDT: who is discussed, with whom, and what the tumour board may decide.

Sources: HPB-MDT and Garden (every patient with liver metastases to a specialist HPB MDT with a
liver surgeon and a radiologist), ESMO-stmts, EORTC-elig, COLL-crit (resectability), FLR-tab,
NewEPOC, NICE-TA439, PARADIGM (biologics), BCLM-*, NET-rev (other primaries).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from states.context import Ctx, effective_liver, plus
from states.facts import Decision, Phase, Snapshot
from states.policy import Policy
from states.rules import Reason, reason
from states.vocabulary import (
    ANTI_EGFR,
    CHEMO_PLANS,
    COLORECTAL_REGIMENS,
    SURGICAL_PLANS,
    EventType,
    Extent,
    Extrahepatic,
    PhaseKind,
    Plan,
    Primary,
    Regimen,
    Resectability,
    Risk,
    State,
)

QUORUM = ("liver_surgeon", "radiologist")

PLAN_PHASE = {
    Plan.perioperative_chemotherapy: PhaseKind.neoadjuvant,
    Plan.conversion_chemotherapy: PhaseKind.conversion,
    Plan.systemic_therapy: PhaseKind.systemic,
}


# -- transitions -------------------------------------------------------------------------------


def plan_is(plan: Plan) -> Callable[[Ctx], bool]:
    def condition(ctx: Ctx) -> bool:
        return ctx.d.plan is plan

    condition.__name__ = f"plan_is_{plan}"
    return condition


# -- guards ------------------------------------------------------------------------------------


def referral_guards(ctx: Ctx) -> list[Reason]:
    if ctx.d.prior_chemo:
        return [reason("CHEMO_BEFORE_SURGICAL_REVIEW")]
    return []


def default_regimen(primary: str) -> Regimen:
    return Regimen.FOLFOX if primary == Primary.colorectal else Regimen.other


def decision_guards(ctx: Ctx) -> list[Reason]:
    s, d, policy = ctx.s, ctx.d, ctx.policy
    plan = d.plan
    surgical = plan in SURGICAL_PLANS
    out: list[Reason] = []

    missing = [role for role in QUORUM if role not in d.attendees]
    if missing:
        out.append(reason("MDT_QUORUM", missing=", ".join(missing)))

    if plan in (Plan.resection, Plan.perioperative_chemotherapy) and d.resectability is not Resectability.resectable:
        out.append(reason("NOT_RESECTABLE", plan=plan, needed="resectable", resectability=d.resectability))
    elif plan is Plan.portal_vein_embolization and d.resectability is Resectability.unresectable:
        out.append(reason("NOT_RESECTABLE", plan=plan, needed="resectable or potentially resectable",
                          resectability=d.resectability))

    if surgical and d.complete_resection_feasible is False and s.primary != Primary.neuroendocrine:
        out.append(reason("INCOMPLETE_RESECTION", plan=plan))
    if surgical and d.operative_risk is Risk.high:
        out.append(reason("HIGH_OPERATIVE_RISK", plan=plan))
    if (surgical or plan is Plan.ablation) and d.extrahepatic is Extrahepatic.uncontrollable:
        out.append(reason("UNCONTROLLED_EXTRAHEPATIC", plan=plan))
    if surgical and s.progression is not None:
        out.append(reason("PROGRESSION_ON_CHEMO", last=s.progression))

    if plan in (Plan.resection, Plan.perioperative_chemotherapy):
        if d.flr_percent is not None:
            liver = effective_liver(d.liver, s.chemo_days, policy)
            threshold = policy.threshold(liver)
            if d.flr_percent < threshold:
                out.append(reason("FLR_INSUFFICIENT", flr=_num(d.flr_percent), threshold=_num(threshold),
                                  liver=liver.replace("_", "-")))
        elif d.extent is Extent.major:
            out.append(reason("FLR_NOT_RECORDED"))

    if d.biologic in ANTI_EGFR:
        if plan is Plan.perioperative_chemotherapy:
            out.append(reason("ANTI_EGFR_PERIOPERATIVE", biologic=d.biologic))
        ras = d.ras or s.ras or "unknown"
        if ras != "wild_type":
            out.append(reason("ANTI_EGFR_RAS", biologic=d.biologic, ras=ras))
        if (d.sidedness or s.sidedness) == "right":
            out.append(reason("RIGHT_SIDED_ANTI_EGFR", biologic=d.biologic))

    if s.primary == Primary.breast and (surgical or plan is Plan.ablation) and not s.systemic_restaged_ok:
        out.append(reason("BREAST_SYSTEMIC_FIRST"))

    if (
        plan is Plan.ablation
        and d.largest_lesion_cm is not None
        and d.largest_lesion_cm > policy.ablation_max_lesion_cm
    ):
        out.append(reason("ABLATION_LESION_SIZE", limit=_num(policy.ablation_max_lesion_cm),
                          size=_num(d.largest_lesion_cm)))

    if plan in CHEMO_PLANS and s.primary != Primary.colorectal:
        regimen = d.regimen or default_regimen(s.primary)
        colorectal_schedule = plan in (Plan.perioperative_chemotherapy, Plan.conversion_chemotherapy)
        if colorectal_schedule or regimen in COLORECTAL_REGIMENS:
            what = plan.replace("_", " ") if colorectal_schedule else ""
            if regimen in COLORECTAL_REGIMENS:
                what = f"{what} with {regimen}" if what else str(regimen)
            out.append(reason("COLORECTAL_REGIMEN", what=what, primary=s.primary))
    return out


def _num(value: float) -> str:
    return f"{value:g}"


# -- effects -----------------------------------------------------------------------------------


def referral_snapshot(ctx: Ctx) -> Snapshot:
    e, d = ctx.e, ctx.d
    return Snapshot(
        patient=e.patient,
        state=State.referral,
        primary=str(d.primary),
        referred_on=e.on,
        latest_on=e.on,
        entered_on=e.on,
        high_volume_centre=d.high_volume_centre,
        prior_chemo=d.prior_chemo,
        mdt_seq=1,
        mdt_anchor=e.on,
    )


def mdt_scheduled_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    return s.replace(meeting_on=ctx.d.meeting_on)


def decision_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    d, e, policy = ctx.d, ctx.e, ctx.policy
    regimen = d.regimen or default_regimen(s.primary)
    decision = Decision(
        on=e.on,
        plan=d.plan,
        regimen=regimen,
        biologic=d.biologic,
        extent=d.extent,
        flr_percent=d.flr_percent,
        liver=d.liver,
        liver_effective=effective_liver(d.liver, s.chemo_days, policy),
    )
    changes: dict[str, Any] = {"decision": decision, "meeting_on": None}
    if d.ras is not None:
        changes["ras"] = str(d.ras)
    if d.sidedness is not None:
        changes["sidedness"] = str(d.sidedness)
    kind = PLAN_PHASE.get(d.plan)
    if kind is not None:
        seq = s.phase_seq + 1
        changes["phase_seq"] = seq
        changes["phase"] = Phase(
            seq=seq,
            kind=kind,
            regimen=regimen,
            biologic=d.biologic,
            started_on=e.on,
            next_due=first_cycle_due(s, e.on, policy),
        )
    if dest is State.follow_up:
        # watch: surveillance continues from the end of the last treatment, else from this decision;
        # visits already done stay done (their marks are kept in surv_done)
        changes["surv_anchor"] = s.treatment_end or e.on
    return s.replace(**changes)


def first_cycle_due(s: Snapshot, decided_on: date, policy: Policy) -> date:
    """MDT decision + 7 days, but not before the wound-healing interval after a liver procedure
    (ADJUVANT_TOO_EARLY would refuse an earlier cycle)."""
    due = plus(decided_on, policy.first_cycle_days)
    if s.last_procedure_on is not None:
        due = max(due, plus(s.last_procedure_on, policy.adjuvant_min_days))
    return due


def biomarker_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    d = ctx.d
    changes = {name: str(getattr(d, name)) for name in ("ras", "braf", "msi", "sidedness")
               if getattr(d, name) is not None}
    return s.replace(**changes)


TRANSITIONS: list[dict[str, Any]] = [
    *(
        {"trigger": EventType.mdt_decision, "source": State.mdt_assessment, "dest": dest,
         "conditions": [plan_is(plan)]}
        for plan, dest in (
            (Plan.perioperative_chemotherapy, State.neoadjuvant_chemo),
            (Plan.conversion_chemotherapy, State.conversion_chemo),
            (Plan.resection, State.resection),
            (Plan.ablation, State.ablation),
            (Plan.portal_vein_embolization, State.portal_vein_embolization),
            (Plan.systemic_therapy, State.systemic_therapy),
            (Plan.surveillance, State.follow_up),
        )
    ),
]
