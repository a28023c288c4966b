"""The public vocabulary of the pathway (docs/contract.md sections 2, 3 and 5).

Every name here is part of the contract with users and embedding systems: keep them exactly.
"""

from enum import StrEnum


class State(StrEnum):
    """Where a patient is on the liver-metastasis pathway (spec section 2)."""

    referral = "referral"  # referred; waiting for the specialist HPB MDT (HPB-MDT, Garden)
    mdt_assessment = "mdt_assessment"  # to be discussed / being discussed at the tumour board
    neoadjuvant_chemo = "neoadjuvant_chemo"  # perioperative FOLFOX/CAPOX, pre-operative part (EORTC-08)
    conversion_chemo = "conversion_chemo"  # downsizing initially unresectable disease (Conv2m, Beppu)
    portal_vein_embolization = "portal_vein_embolization"  # waiting for the remnant to grow (KGR, PVE-SR)
    resection = "resection"  # liver surgery stage: awaiting or booked
    ablation = "ablation"  # thermal ablation stage: awaiting or booked (COLL-res)
    systemic_therapy = "systemic_therapy"  # non-surgical / palliative systemic treatment
    adjuvant_chemo = "adjuvant_chemo"  # post-operative part of perioperative chemotherapy
    follow_up = "follow_up"  # surveillance after treatment (NCCN-tab, T34)
    discharged = "discharged"  # terminal (recurrence can reopen the pathway)
    deceased = "deceased"  # terminal
    withdrawn = "withdrawn"  # terminal: patient left the pathway


TERMINAL_STATES = frozenset({State.discharged, State.deceased, State.withdrawn})
NON_TERMINAL_STATES = tuple(s for s in State if s not in TERMINAL_STATES)
CHEMO_STATES = (
    State.neoadjuvant_chemo,
    State.conversion_chemo,
    State.adjuvant_chemo,
    State.systemic_therapy,
)


class EventType(StrEnum):
    """Facts and decisions recorded about a patient, in the past tense (spec section 3)."""

    referral = "referral"
    mdt_scheduled = "mdt_scheduled"
    mdt_decision = "mdt_decision"
    cycle_given = "cycle_given"
    cycle_delayed = "cycle_delayed"
    chemo_stopped = "chemo_stopped"
    biomarker = "biomarker"
    booked = "booked"
    restaging = "restaging"
    pve_performed = "pve_performed"
    surgery = "surgery"
    ablation_performed = "ablation_performed"
    ablation_checked = "ablation_checked"
    surveillance_visit = "surveillance_visit"
    recurrence = "recurrence"
    discharged = "discharged"
    died = "died"
    withdrawn = "withdrawn"
    void = "void"


class Severity(StrEnum):
    """How a rule acts (spec section 4)."""

    block = "block"  # refused; only the refusal is stored in the audit log
    confirm = "confirm"  # refused unless overridden with a reason
    advice = "advice"  # accepted; the advice is kept and shown


class Status(StrEnum):
    """The result of recording one event (spec section 7)."""

    accepted = "accepted"
    refused = "refused"
    duplicate = "duplicate"
    invalid = "invalid"


class ReminderKind(StrEnum):
    """What the projected care plan reminds people of (spec section 5)."""

    mdt_due = "mdt_due"
    mdt_meeting = "mdt_meeting"
    chemo_cycle = "chemo_cycle"
    restaging_scan = "restaging_scan"
    surgery_due = "surgery_due"
    pve_due = "pve_due"
    flr_scan = "flr_scan"
    ablation_due = "ablation_due"
    ablation_scan = "ablation_scan"
    imaging_followup = "imaging_followup"
    surveillance = "surveillance"


class Primary(StrEnum):
    colorectal = "colorectal"
    neuroendocrine = "neuroendocrine"
    breast = "breast"
    other = "other"


class Plan(StrEnum):
    """`mdt_decision.plan` and the state each plan leads to (spec 3.1)."""

    perioperative_chemotherapy = "perioperative_chemotherapy"
    conversion_chemotherapy = "conversion_chemotherapy"
    resection = "resection"
    ablation = "ablation"
    portal_vein_embolization = "portal_vein_embolization"
    systemic_therapy = "systemic_therapy"
    surveillance = "surveillance"


#: Plans that lead to liver surgery: the rules of spec section 4 call them "surgical plans".
SURGICAL_PLANS = frozenset({Plan.resection, Plan.perioperative_chemotherapy, Plan.portal_vein_embolization})
CHEMO_PLANS = frozenset(
    {Plan.perioperative_chemotherapy, Plan.conversion_chemotherapy, Plan.systemic_therapy}
)


class Regimen(StrEnum):
    FOLFOX = "FOLFOX"
    FOLFIRI = "FOLFIRI"
    CAPOX = "CAPOX"
    other = "other"


COLORECTAL_REGIMENS = frozenset({Regimen.FOLFOX, Regimen.FOLFIRI, Regimen.CAPOX})


class Biologic(StrEnum):
    bevacizumab = "bevacizumab"
    cetuximab = "cetuximab"
    panitumumab = "panitumumab"
    none = "none"


ANTI_EGFR = frozenset({Biologic.cetuximab, Biologic.panitumumab})


class Resectability(StrEnum):
    resectable = "resectable"
    potentially_resectable = "potentially_resectable"
    unresectable = "unresectable"


class Risk(StrEnum):
    low = "low"
    high = "high"


class Extrahepatic(StrEnum):
    none = "none"
    controllable = "controllable"
    uncontrollable = "uncontrollable"


class Liver(StrEnum):
    normal = "normal"
    chemo_injured = "chemo_injured"
    cirrhotic = "cirrhotic"


class Extent(StrEnum):
    minor = "minor"
    major = "major"


class Ras(StrEnum):
    wild_type = "wild_type"
    mutant = "mutant"
    unknown = "unknown"


class Braf(StrEnum):
    wild_type = "wild_type"
    v600e = "v600e"
    unknown = "unknown"


class Msi(StrEnum):
    msi_high = "msi_high"
    mss = "mss"
    unknown = "unknown"


class Sidedness(StrEnum):
    left = "left"
    right = "right"


class StopReason(StrEnum):
    completed = "completed"
    toxicity = "toxicity"
    progression = "progression"
    patient_choice = "patient_choice"


class Bookable(StrEnum):
    """`booked.what` and the reminder kind each booking moves."""

    surgery = "surgery"
    pve = "pve"
    ablation = "ablation"
    restaging_scan = "restaging_scan"
    flr_scan = "flr_scan"
    ablation_scan = "ablation_scan"


BOOKED_KIND = {
    Bookable.surgery: ReminderKind.surgery_due,
    Bookable.pve: ReminderKind.pve_due,
    Bookable.ablation: ReminderKind.ablation_due,
    Bookable.restaging_scan: ReminderKind.restaging_scan,
    Bookable.flr_scan: ReminderKind.flr_scan,
    Bookable.ablation_scan: ReminderKind.ablation_scan,
}


class Response(StrEnum):
    complete = "complete"
    partial = "partial"
    stable = "stable"
    progression = "progression"


class Procedure(StrEnum):
    resection = "resection"
    resection_with_ablation = "resection_with_ablation"
    two_stage_first = "two_stage_first"
    two_stage_second = "two_stage_second"
    exploration_only = "exploration_only"


class Margin(StrEnum):
    R0 = "R0"
    R1 = "R1"
    R2 = "R2"


class PathologicalResponse(StrEnum):
    complete = "complete"
    major = "major"
    minor = "minor"
    none = "none"


class Technique(StrEnum):
    RFA = "RFA"
    MWA = "MWA"


class Finding(StrEnum):
    clear = "clear"
    suspicious = "suspicious"


class Site(StrEnum):
    liver = "liver"
    lung = "lung"
    peritoneum = "peritoneum"
    bone = "bone"
    other = "other"


class DischargeReason(StrEnum):
    completed_surveillance = "completed_surveillance"
    referred_back = "referred_back"
    not_for_treatment = "not_for_treatment"
    other = "other"


class PhaseKind(StrEnum):
    """A course of chemotherapy; its number of planned cycles and first date depend on the kind."""

    neoadjuvant = "neoadjuvant"
    conversion = "conversion"
    systemic = "systemic"
    adjuvant = "adjuvant"


class ReferralRoute(StrEnum):
    """`referral.route`: how the cancer was referred; the first three open a 62-day clock (NHS
    England Cancer Waiting Times, docs/clinical-rules.md section 3)."""

    urgent_suspected_cancer = "urgent_suspected_cancer"
    screening = "screening"
    consultant_upgrade = "consultant_upgrade"
    known_cancer = "known_cancer"  # already diagnosed elsewhere: no 62-day clock (the default)


SIXTY_TWO_DAY_ROUTES = frozenset(
    {ReferralRoute.urgent_suspected_cancer, ReferralRoute.screening, ReferralRoute.consultant_upgrade})


class ClockStandard(StrEnum):
    """A cancer waiting-time standard (docs/contract.md section 8)."""

    d62 = "62_day"  # referral received -> first definitive treatment
    d31 = "31_day"  # decision to treat (or ECAD) -> treatment, first and subsequent


class ClockStatus(StrEnum):
    open = "open"  # waiting, target not passed
    met = "met"  # treatment started on or before the target date
    breached = "breached"  # treatment started after the target date, or still waiting after it
    removed = "removed"  # ended without treatment (died, withdrew, discharged): not reported


class Forecast(StrEnum):
    on_track = "on_track"
    at_risk = "at_risk"
    will_breach = "will_breach"
