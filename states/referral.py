"""Referral and the HPB MDT: who is discussed, with whom, and what the tumour board may decide.

Sources: HPB-MDT and Garden (every patient with liver metastases to a specialist HPB MDT with a
liver surgeon and a radiologist), ESMO-stmts, EORTC-elig, COLL-crit (resectability), FLR-tab,
NewEPOC, NICE-TA439, PARADIGM (biologics), BCLM-*, NET-rev (other primaries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date
from typing import Any

from states import clocks
from states.context import Ctx, effective_liver, plus
from states.data import BiomarkerData, MdtDecisionData, MdtScheduledData, ReferralData
from states.facts import Decision, Phase, Snapshot
from states.policy import Policy
from states.rules import Reason, Rule
from states.stage import Availability, EventSpec, Lane, ReminderSpec, Stage, Transition
from states.vocabulary import (
    ANTI_EGFR,
    CHEMO_PLANS,
    COLORECTAL_REGIMENS,
    NON_TERMINAL_STATES,
    SURGICAL_PLANS,
    EventType,
    Extent,
    Extrahepatic,
    PhaseKind,
    Plan,
    Primary,
    Regimen,
    ReminderKind,
    Resectability,
    Risk,
    Severity,
    State,
)

QUORUM = ("liver_surgeon", "radiologist")

PLAN_PHASE = {
    Plan.perioperative_chemotherapy: PhaseKind.neoadjuvant,
    Plan.conversion_chemotherapy: PhaseKind.conversion,
    Plan.systemic_therapy: PhaseKind.systemic,
}


# -- rules -------------------------------------------------------------------------------------

MDT_QUORUM = Rule(
    "MDT_QUORUM",
    Severity.block,
    "mdt_decision without both a liver surgeon and a radiologist",
    "An MDT decision needs a liver surgeon and a radiologist present (missing: {missing}); "
    "re-list the case at a quorate HPB MDT.",
    "HPB-MDT (Manchester HPB MDT guideline 2015); Garden et al., Gut 2006;55(Suppl III); ESMO-16",
)

NOT_RESECTABLE = Rule(
    "NOT_RESECTABLE",
    Severity.block,
    "plan resection or perioperative_chemotherapy with resectability other than resectable; "
    "plan portal_vein_embolization with unresectable",
    "Plan {plan} needs {needed} disease, but the MDT recorded {resectability}; "
    "choose conversion_chemotherapy or systemic_therapy instead.",
    "EORTC-elig (NCT00006479); ESMO-stmts; COLL-crit (Cancers 2020;12:1779)",
)

INCOMPLETE_RESECTION = Rule(
    "INCOMPLETE_RESECTION",
    Severity.block,
    "surgical plan with complete_resection_feasible false (not for neuroendocrine primaries)",
    "No partial palliative resection: plan {plan} needs a complete (R0) resection to be feasible; "
    "choose conversion_chemotherapy or systemic_therapy.",
    "Garden et al., Gut 2006 (resect only if all disease can be removed); seed document",
)

HIGH_OPERATIVE_RISK = Rule(
    "HIGH_OPERATIVE_RISK",
    Severity.confirm,
    "surgical plan with operative_risk high",
    "Operative risk is high for plan {plan}; consider thermal ablation (or confirm with a reason).",
    "COLL-res (van der Lei et al., Lancet Oncol 2025); EORTC-elig (PS 0-2); seed document",
)

UNCONTROLLED_EXTRAHEPATIC = Rule(
    "UNCONTROLLED_EXTRAHEPATIC",
    Severity.block,
    "surgical plan or ablation with uncontrollable extrahepatic disease",
    "Uncontrollable extrahepatic disease rules out plan {plan}; choose systemic_therapy.",
    "ESMO-stmts (R0 resection of confined liver/lung metastases); Lung; seed document",
)

PROGRESSION_ON_CHEMO = Rule(
    "PROGRESSION_ON_CHEMO",
    Severity.block,
    "surgical plan while the latest restaging or progression event is a progression",
    "The disease progressed on chemotherapy ({last}); no liver surgery after progression: "
    "change the line of therapy and restage before planning surgery.",
    "EORTC-08 (Nordlinger et al., Lancet 2008); BCLM-MDA; seed document (candidacy criteria)",
)

FLR_INSUFFICIENT = Rule(
    "FLR_INSUFFICIENT",
    Severity.block,
    "resection or perioperative plan with flr_percent below the threshold for the liver",
    "Future liver remnant {flr}% is below {threshold}% for a {liver} liver; "
    "plan portal_vein_embolization (or a two-stage hepatectomy) first.",
    "FLR-tab (J Surg Oncol 2019;119:594, Table 1); Madoff 2005; Karoui (Ann Surg 2006)",
)

FLR_NOT_RECORDED = Rule(
    "FLR_NOT_RECORDED",
    Severity.confirm,
    "resection or perioperative plan of major extent without flr_percent",
    "A major liver resection is planned without a measured future liver remnant; record "
    "flr_percent from CT volumetry (or confirm with a reason).",
    "FLR-tab; Madoff 2005 (volumetry before major hepatectomy)",
)

ANTI_EGFR_PERIOPERATIVE = Rule(
    "ANTI_EGFR_PERIOPERATIVE",
    Severity.block,
    "perioperative_chemotherapy with cetuximab or panitumumab; on a fact: a neoadjuvant or adjuvant "
    "cycle with them",
    "No anti-EGFR antibody ({biologic}) around liver surgery for resectable disease "
    "(New EPOC: worse survival); use chemotherapy alone or with bevacizumab.",
    "NewEPOC (Primrose et al., Lancet Oncol 2014;15:601; Bridgewater et al. long-term OS)",
)

ANTI_EGFR_RAS = Rule(
    "ANTI_EGFR_RAS",
    Severity.block,
    "cetuximab or panitumumab with RAS status other than wild_type",
    "{biologic} needs an expanded RAS wild-type result, but RAS is {ras}; record the RAS result "
    "(biomarker) or use bevacizumab.",
    "ESMO-stmts (RAS before anti-EGFR, I,A); NICE-TA439",
)

RIGHT_SIDED_ANTI_EGFR = Rule(
    "RIGHT_SIDED_ANTI_EGFR",
    Severity.confirm,
    "cetuximab or panitumumab with a right-sided primary",
    "{biologic} benefits left-sided RAS wild-type tumours; this primary is right-sided: prefer "
    "bevacizumab (or confirm with a reason).",
    "PARADIGM (JAMA 2023); ESMO-stmts",
)

BREAST_SYSTEMIC_FIRST = Rule(
    "BREAST_SYSTEMIC_FIRST",
    Severity.block,
    "breast primary: surgical plan or ablation without an earlier systemic_therapy phase whose latest "
    "restaging was not progression",
    "Breast cancer liver metastases are treated with systemic therapy first; liver surgery or "
    "ablation only after a restaging on systemic therapy shows no progression.",
    "BCLM-rev (Terata et al.); BCLM-MDA; BCLM-Ruiz (Breast Cancer Res Treat 2018)",
)

ABLATION_LESION_SIZE = Rule(
    "ABLATION_LESION_SIZE",
    Severity.confirm,
    "plan ablation with the largest lesion over 3 cm",
    "Thermal ablation is first-line for lesions up to {limit} cm; the largest is {size} cm: "
    "consider resection (or confirm with a reason).",
    "COLL-prot (BMC Cancer 2018;18:821); COLL-res; COLL-crit",
)

COLORECTAL_REGIMEN = Rule(
    "COLORECTAL_REGIMEN",
    Severity.confirm,
    "chemotherapy plan for a non-colorectal primary that is perioperative, conversion, or uses "
    "FOLFOX/FOLFIRI/CAPOX",
    "Colorectal schedules ({what}) do not fit a {primary} primary; use the primary's own "
    "systemic treatment (or confirm with a reason).",
    "NET-rev; PNET; BCLM-rev (never route NET or breast patients to CRC FOLFOX / EORTC schedules)",
)

CHEMO_BEFORE_SURGICAL_REVIEW = Rule(
    "CHEMO_BEFORE_SURGICAL_REVIEW",
    Severity.advice,
    "a referral with prior_chemo true",
    "Chemotherapy began before a liver surgeon saw the case: responding lesions may vanish; "
    "mark them and review at the HPB MDT urgently.",
    "DLM-prev (early involvement of a liver surgeon); seed document",
)


# -- transitions -------------------------------------------------------------------------------


def plan_is(plan: Plan) -> Callable[[Ctx[MdtDecisionData]], bool]:
    def condition(ctx: Ctx[MdtDecisionData]) -> bool:
        return ctx.data.plan is plan

    condition.__name__ = f"plan_is_{plan}"
    return condition


# -- guards ------------------------------------------------------------------------------------


def referral_guards(ctx: Ctx[ReferralData]) -> list[Reason]:
    if ctx.data.prior_chemo:
        return [CHEMO_BEFORE_SURGICAL_REVIEW.reason()]
    return []


def default_regimen(primary: str) -> Regimen:
    return Regimen.FOLFOX if primary == Primary.colorectal else Regimen.other


def decision_guards(ctx: Ctx[MdtDecisionData]) -> list[Reason]:
    s, d, policy = ctx.snapshot, ctx.data, ctx.policy
    plan = d.plan
    surgical = plan in SURGICAL_PLANS
    out: list[Reason] = []

    missing = [role for role in QUORUM if role not in d.attendees]
    if missing:
        out.append(MDT_QUORUM.reason(missing=", ".join(missing)))

    if plan in (Plan.resection, Plan.perioperative_chemotherapy) and d.resectability is not Resectability.resectable:
        out.append(NOT_RESECTABLE.reason(plan=plan, needed="resectable", resectability=d.resectability))
    elif plan is Plan.portal_vein_embolization and d.resectability is Resectability.unresectable:
        out.append(NOT_RESECTABLE.reason(plan=plan, needed="resectable or potentially resectable",
                          resectability=d.resectability))

    if surgical and d.complete_resection_feasible is False and s.primary != Primary.neuroendocrine:
        out.append(INCOMPLETE_RESECTION.reason(plan=plan))
    if surgical and d.operative_risk is Risk.high:
        out.append(HIGH_OPERATIVE_RISK.reason(plan=plan))
    if (surgical or plan is Plan.ablation) and d.extrahepatic is Extrahepatic.uncontrollable:
        out.append(UNCONTROLLED_EXTRAHEPATIC.reason(plan=plan))
    if surgical and s.progression is not None:
        out.append(PROGRESSION_ON_CHEMO.reason(last=s.progression))

    if plan in (Plan.resection, Plan.perioperative_chemotherapy):
        if d.flr_percent is not None:
            liver = effective_liver(d.liver, s.chemo_days, policy)
            threshold = policy.threshold(liver)
            if d.flr_percent < threshold:
                out.append(FLR_INSUFFICIENT.reason(flr=_num(d.flr_percent), threshold=_num(threshold),
                                  liver=liver.replace("_", "-")))
        elif d.extent is Extent.major:
            out.append(FLR_NOT_RECORDED.reason())

    if d.biologic in ANTI_EGFR:
        if plan is Plan.perioperative_chemotherapy:
            out.append(ANTI_EGFR_PERIOPERATIVE.reason(biologic=d.biologic))
        ras = d.ras or s.ras or "unknown"
        if ras != "wild_type":
            out.append(ANTI_EGFR_RAS.reason(biologic=d.biologic, ras=ras))
        if (d.sidedness or s.sidedness) == "right":
            out.append(RIGHT_SIDED_ANTI_EGFR.reason(biologic=d.biologic))

    if s.primary == Primary.breast and (surgical or plan is Plan.ablation) and not s.systemic_restaged_ok:
        out.append(BREAST_SYSTEMIC_FIRST.reason())

    if (
        plan is Plan.ablation
        and d.largest_lesion_cm is not None
        and d.largest_lesion_cm > policy.ablation_max_lesion_cm
    ):
        out.append(ABLATION_LESION_SIZE.reason(limit=_num(policy.ablation_max_lesion_cm),
                          size=_num(d.largest_lesion_cm)))

    if plan in CHEMO_PLANS and s.primary != Primary.colorectal:
        regimen = d.regimen or default_regimen(s.primary)
        colorectal_schedule = plan in (Plan.perioperative_chemotherapy, Plan.conversion_chemotherapy)
        if colorectal_schedule or regimen in COLORECTAL_REGIMENS:
            what = plan.replace("_", " ") if colorectal_schedule else ""
            if regimen in COLORECTAL_REGIMENS:
                what = f"{what} with {regimen}" if what else str(regimen)
            out.append(COLORECTAL_REGIMEN.reason(what=what, primary=s.primary))
    return out


def _num(value: float) -> str:
    return f"{value:g}"


# -- effects -----------------------------------------------------------------------------------


def referral_snapshot(ctx: Ctx[ReferralData]) -> Snapshot:
    e, d = ctx.event, ctx.data
    new = Snapshot(
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
    return clocks.referral_clocks(new, d, e.on, ctx.policy)


def mdt_scheduled_effect(ctx: Ctx[MdtScheduledData], s: Snapshot, dest: State) -> Snapshot:
    return s.replace(meeting_on=ctx.data.meeting_on)


def decision_effect(ctx: Ctx[MdtDecisionData], s: Snapshot, dest: State) -> Snapshot:
    d, e, policy = ctx.data, ctx.event, ctx.policy
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


def biomarker_effect(ctx: Ctx[BiomarkerData], s: Snapshot, dest: State) -> Snapshot:
    d = ctx.data
    changes = {name: str(getattr(d, name)) for name in ("ras", "braf", "msi", "sidedness")
               if getattr(d, name) is not None}
    return s.replace(**changes)


def entering_the_mdt(ctx: Ctx[Any], dest: State) -> Mapping[str, Any]:
    """A new stay at the MDT: its own reminder key, due date anchor, and no meeting booked yet."""
    if dest is State.mdt_assessment:
        return {"mdt_seq": ctx.snapshot.mdt_seq + 1, "mdt_anchor": ctx.event.on, "meeting_on": None}
    return {}


# -- the care plan ---------------------------------------------------------------------------------


def plan_mdt_due(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    """The discussion at the MDT (T4): referral + 14 days; back at the MDT without a meeting booked:
    the return + 14 days."""
    if s.state is State.referral:
        yield str(s.mdt_seq), plus(s.mdt_anchor or s.referred_on, policy.mdt_due_days), "first discussion at the HPB MDT"
    elif s.meeting_on is None:
        anchor = s.mdt_anchor or s.entered_on
        yield str(s.mdt_seq), plus(anchor, policy.mdt_due_days), "discussion at the HPB MDT"


def plan_mdt_meeting(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    if s.meeting_on is not None:
        yield str(s.mdt_seq), s.meeting_on, "HPB MDT meeting"


_DECISIONS = (
    (Plan.perioperative_chemotherapy, State.neoadjuvant_chemo),
    (Plan.conversion_chemotherapy, State.conversion_chemo),
    (Plan.resection, State.resection),
    (Plan.ablation, State.ablation),
    (Plan.portal_vein_embolization, State.portal_vein_embolization),
    (Plan.systemic_therapy, State.systemic_therapy),
    (Plan.surveillance, State.follow_up),
)

STAGE = Stage(
    name="referral and MDT",
    events=(
        EventSpec(EventType.referral, ReferralData, "Referral", Lane.mdt,
                  "A new patient referred with liver metastases.", guard=referral_guards,
                  availability=Availability.new_patient),
        EventSpec(EventType.mdt_scheduled, MdtScheduledData, "MDT discussion booked", Lane.mdt,
                  "A (new) discussion at the HPB MDT is booked.", effect=mdt_scheduled_effect),
        EventSpec(EventType.mdt_decision, MdtDecisionData, "MDT decision", Lane.mdt,
                  "The tumour board's decision: plan, resectability, risk, remnant.", guard=decision_guards,
                  effect=decision_effect),
        EventSpec(EventType.biomarker, BiomarkerData, "Biomarker result", Lane.mdt,
                  "Tumour biomarkers or sidedness became known.", effect=biomarker_effect),
    ),
    transitions=(
        *(Transition(EventType.mdt_scheduled, state, State.mdt_assessment) for state in NON_TERMINAL_STATES),
        *(Transition(EventType.biomarker, state, None) for state in NON_TERMINAL_STATES),
        *(Transition(EventType.mdt_decision, State.mdt_assessment, dest, when=plan_is(plan))
          for plan, dest in _DECISIONS),
    ),
    rules=(MDT_QUORUM, NOT_RESECTABLE, INCOMPLETE_RESECTION, HIGH_OPERATIVE_RISK, UNCONTROLLED_EXTRAHEPATIC,
           PROGRESSION_ON_CHEMO, FLR_INSUFFICIENT, FLR_NOT_RECORDED, ANTI_EGFR_PERIOPERATIVE, ANTI_EGFR_RAS,
           RIGHT_SIDED_ANTI_EGFR, BREAST_SYSTEMIC_FIRST, ABLATION_LESION_SIZE, COLORECTAL_REGIMEN,
           CHEMO_BEFORE_SURGICAL_REVIEW),
    reminders=(
        ReminderSpec(ReminderKind.mdt_due, "MDT discussion due", "mdt", Lane.mdt,
                     frozenset({EventType.mdt_scheduled, EventType.mdt_decision}),
                     frozenset({State.referral, State.mdt_assessment}), plan_mdt_due),
        ReminderSpec(ReminderKind.mdt_meeting, "MDT meeting", "mdt", Lane.mdt,
                     frozenset({EventType.mdt_decision}), frozenset({State.mdt_assessment}), plan_mdt_meeting),
    ),
    on_state_change=entering_the_mdt,
)
