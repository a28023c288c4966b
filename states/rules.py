"""The rule catalogue: every guard's stable code, severity, message and clinical source (spec section 4).

A refusal always says why and what to do instead, and cites where the rule comes from
(clinical/rules.md). Which event a rule applies to is decided in the stage modules; this module
holds the words, so that the HTTP API, the CLI and the web page all show the same text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from states.vocabulary import Severity


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    severity: Severity
    #: What the rule checks (documentation; shown by the pathway definition).
    when: str
    #: A one-line message template: why, and what to do instead. Filled with `str.format`.
    message: str
    #: The clinical source, with its key from clinical/rules.md.
    source: str


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule that fired on one event."""

    code: str
    severity: Severity
    message: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "source": self.source,
        }


_RULES = (
    Rule(
        "NOT_ALLOWED_IN_STATE",
        Severity.block,
        "the event type is not allowed in the patient's current state",
        "{event} is not allowed while the patient is in {state}; allowed here: {allowed}.",
        "spec/events.md section 3 (the pathway's transitions)",
    ),
    Rule(
        "MDT_QUORUM",
        Severity.block,
        "mdt_decision without both a liver surgeon and a radiologist",
        "An MDT decision needs a liver surgeon and a radiologist present (missing: {missing}); "
        "re-list the case at a quorate HPB MDT.",
        "HPB-MDT (Manchester HPB MDT guideline 2015); Garden et al., Gut 2006;55(Suppl III); ESMO-16",
    ),
    Rule(
        "NOT_RESECTABLE",
        Severity.block,
        "plan resection or perioperative_chemotherapy with resectability other than resectable; "
        "plan portal_vein_embolization with unresectable",
        "Plan {plan} needs {needed} disease, but the MDT recorded {resectability}; "
        "choose conversion_chemotherapy or systemic_therapy instead.",
        "EORTC-elig (NCT00006479); ESMO-stmts; COLL-crit (Cancers 2020;12:1779)",
    ),
    Rule(
        "INCOMPLETE_RESECTION",
        Severity.block,
        "surgical plan with complete_resection_feasible false (not for neuroendocrine primaries)",
        "No partial palliative resection: plan {plan} needs a complete (R0) resection to be feasible; "
        "choose conversion_chemotherapy or systemic_therapy.",
        "Garden et al., Gut 2006 (resect only if all disease can be removed); seed document",
    ),
    Rule(
        "HIGH_OPERATIVE_RISK",
        Severity.confirm,
        "surgical plan with operative_risk high",
        "Operative risk is high for plan {plan}; consider thermal ablation (or confirm with a reason).",
        "COLL-res (van der Lei et al., Lancet Oncol 2025); EORTC-elig (PS 0-2); seed document",
    ),
    Rule(
        "UNCONTROLLED_EXTRAHEPATIC",
        Severity.block,
        "surgical plan or ablation with uncontrollable extrahepatic disease",
        "Uncontrollable extrahepatic disease rules out plan {plan}; choose systemic_therapy.",
        "ESMO-stmts (R0 resection of confined liver/lung metastases); Lung; seed document",
    ),
    Rule(
        "PROGRESSION_ON_CHEMO",
        Severity.block,
        "surgical plan while the latest restaging or progression event is a progression",
        "The disease progressed on chemotherapy ({last}); no liver surgery after progression: "
        "change the line of therapy and restage before planning surgery.",
        "EORTC-08 (Nordlinger et al., Lancet 2008); BCLM-MDA; seed document (candidacy criteria)",
    ),
    Rule(
        "FLR_INSUFFICIENT",
        Severity.block,
        "resection or perioperative plan with flr_percent below the threshold for the liver",
        "Future liver remnant {flr}% is below {threshold}% for a {liver} liver; "
        "plan portal_vein_embolization (or a two-stage hepatectomy) first.",
        "FLR-tab (J Surg Oncol 2019;119:594, Table 1); Madoff 2005; Karoui (Ann Surg 2006)",
    ),
    Rule(
        "ANTI_EGFR_PERIOPERATIVE",
        Severity.block,
        "perioperative_chemotherapy with cetuximab or panitumumab; on a fact: a neoadjuvant or adjuvant "
        "cycle with them",
        "No anti-EGFR antibody ({biologic}) around liver surgery for resectable disease "
        "(New EPOC: worse survival); use chemotherapy alone or with bevacizumab.",
        "NewEPOC (Primrose et al., Lancet Oncol 2014;15:601; Bridgewater et al. long-term OS)",
    ),
    Rule(
        "ANTI_EGFR_RAS",
        Severity.block,
        "cetuximab or panitumumab with RAS status other than wild_type",
        "{biologic} needs an expanded RAS wild-type result, but RAS is {ras}; record the RAS result "
        "(biomarker) or use bevacizumab.",
        "ESMO-stmts (RAS before anti-EGFR, I,A); NICE-TA439",
    ),
    Rule(
        "BEVACIZUMAB_WASHOUT",
        Severity.block,
        "surgery booked under 28 days after the last bevacizumab dose (block), 28-41 days (confirm); "
        "the surgery fact under 42 days (confirm)",
        "Surgery on {surgery_on} is {days} days after the last bevacizumab dose ({last_dose}); "
        "the earliest date without override is {earliest}.",
        "Bev (NCCN: 6 weeks; FDA label: at least 28 days)",
    ),
    Rule(
        "BREAST_SYSTEMIC_FIRST",
        Severity.block,
        "breast primary: surgical plan or ablation without an earlier systemic_therapy phase whose latest "
        "restaging was not progression",
        "Breast cancer liver metastases are treated with systemic therapy first; liver surgery or "
        "ablation only after a restaging on systemic therapy shows no progression.",
        "BCLM-rev (Terata et al.); BCLM-MDA; BCLM-Ruiz (Breast Cancer Res Treat 2018)",
    ),
    Rule(
        "CYCLE_OUT_OF_SEQUENCE",
        Severity.block,
        "cycle given and not the next number in this phase",
        "Cycle {cycle} is out of sequence: the next cycle of this {phase} phase is {expected}; "
        "record the missing cycle first.",
        "spec/events.md section 3 (cycle numbering)",
    ),
    Rule(
        "FLR_NOT_RECORDED",
        Severity.confirm,
        "resection or perioperative plan of major extent without flr_percent",
        "A major liver resection is planned without a measured future liver remnant; record "
        "flr_percent from CT volumetry (or confirm with a reason).",
        "FLR-tab; Madoff 2005 (volumetry before major hepatectomy)",
    ),
    Rule(
        "ADJUVANT_TOO_EARLY",
        Severity.confirm,
        "a chemotherapy cycle less than 28 days after liver surgery or ablation",
        "This cycle is {days} days after liver surgery or ablation ({procedure_on}); wait until "
        "{earliest} for wound healing (or confirm with a reason).",
        "Bev (label: at least 28 days and wound healed; NCCN 6-8 weeks); T19, T20",
    ),
    Rule(
        "RIGHT_SIDED_ANTI_EGFR",
        Severity.confirm,
        "cetuximab or panitumumab with a right-sided primary",
        "{biologic} benefits left-sided RAS wild-type tumours; this primary is right-sided: prefer "
        "bevacizumab (or confirm with a reason).",
        "PARADIGM (JAMA 2023); ESMO-stmts",
    ),
    Rule(
        "PREOP_CYCLES_EXCEEDED",
        Severity.confirm,
        "a pre-operative (neoadjuvant) cycle beyond the planned number",
        "{planned} pre-operative cycles were planned and {given} are given; more cycles raise "
        "operative morbidity: restage and operate (or confirm with a reason).",
        "EORTC-08 (6 pre-op cycles); Karoui (Ann Surg 2006); TSH-Passot",
    ),
    Rule(
        "ABLATION_LESION_SIZE",
        Severity.confirm,
        "plan ablation with the largest lesion over 3 cm",
        "Thermal ablation is first-line for lesions up to {limit} cm; the largest is {size} cm: "
        "consider resection (or confirm with a reason).",
        "COLL-prot (BMC Cancer 2018;18:821); COLL-res; COLL-crit",
    ),
    Rule(
        "LOW_VOLUME_CENTRE",
        Severity.confirm,
        "surgery where the referral says the centre is not high-volume",
        "Liver surgery at a low-volume centre carries more complications and deaths; refer to a "
        "high-volume HPB centre (or confirm with a reason).",
        "Seed document; HPB-MDT (tertiary centre referral); Garden et al., Gut 2006",
    ),
    Rule(
        "CYCLE_TOO_EARLY",
        Severity.confirm,
        "a cycle given less than (cycle length - 3) days after the previous cycle of the same phase",
        "This cycle is {days} days after the previous one; the {regimen} cycle is {length} days "
        "(earliest {earliest}); confirm with a reason if it is intended.",
        "T5-T8 (cycle lengths: EORTC-13, eviQ, NewEPOC)",
    ),
    Rule(
        "COLORECTAL_REGIMEN",
        Severity.confirm,
        "chemotherapy plan for a non-colorectal primary that is perioperative, conversion, or uses "
        "FOLFOX/FOLFIRI/CAPOX",
        "Colorectal schedules ({what}) do not fit a {primary} primary; use the primary's own "
        "systemic treatment (or confirm with a reason).",
        "NET-rev; PNET; BCLM-rev (never route NET or breast patients to CRC FOLFOX / EORTC schedules)",
    ),
    Rule(
        "DISAPPEARING_METASTASES",
        Severity.advice,
        "restaging with response complete or disappeared lesions",
        "Lesions have disappeared on imaging; complete response is not cure: confirm with MRI and "
        "resect or ablate the original sites.",
        "DLM-JCO (Benoist et al., J Clin Oncol 2006); DLM-SR; DLM-prev",
    ),
    Rule(
        "CHEMO_BEFORE_SURGICAL_REVIEW",
        Severity.advice,
        "a referral with prior_chemo true",
        "Chemotherapy began before a liver surgeon saw the case: responding lesions may vanish; "
        "mark them and review at the HPB MDT urgently.",
        "DLM-prev (early involvement of a liver surgeon); seed document",
    ),
)

RULES: dict[str, Rule] = {rule.code: rule for rule in _RULES}

#: Block-level codes that stay `block` on a recorded fact: an earlier fact is missing.
ALWAYS_BLOCK = frozenset({"NOT_ALLOWED_IN_STATE", "CYCLE_OUT_OF_SEQUENCE"})


def reason(code: str, *, fact: bool = False, severity: Severity | None = None, **values: Any) -> Reason:
    """Render the rule `code` as a `Reason`.

    On a recorded fact (`fact=True`) a `block` becomes `confirm` — what happened must be
    recordable, the deviation justified in an override — except the codes in ALWAYS_BLOCK.
    """
    rule = RULES[code]
    level = severity or rule.severity
    if fact and level is Severity.block and code not in ALWAYS_BLOCK:
        level = Severity.confirm
    return Reason(code, level, rule.message.format(**values), rule.source)


def check_catalogue() -> None:
    """Every code is unique, upper-case, sourced and explained (style rule 4)."""
    codes = [rule.code for rule in _RULES]
    if len(codes) != len(set(codes)):
        raise AssertionError(f"duplicate rule codes: {sorted(c for c in codes if codes.count(c) > 1)}")
    for rule in _RULES:
        if not rule.code.isupper() or not rule.source.strip() or not rule.message.strip():
            raise AssertionError(f"rule {rule.code} needs an upper-case code, a message and a source")
