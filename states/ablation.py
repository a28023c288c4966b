"""Thermal ablation (RFA / MWA) and its imaging check.

Ablation is an alternative to resection for lesions up to 3 cm (COLL-prot, COLL-res, COLL-crit);
a first contrast CT/MRI follows at 4-6 weeks (T28, ECIO); an incomplete ablation goes back to the MDT.
"""

from __future__ import annotations

from typing import Any

from states.context import Ctx, plus
from states.facts import Snapshot
from states.surgery import after_treatment, wants_adjuvant
from states.vocabulary import EventType, State


def incomplete(ctx: Ctx) -> bool:
    return ctx.d.complete is False


def ablation_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    e, policy = ctx.e, ctx.policy
    changes: dict[str, Any] = {
        "last_procedure_on": e.on,
        "progression": None,  # the window of PROGRESSION_ON_CHEMO restarts at ablation
        "treatment_end": e.on,
        "ablation_scan_seq": s.ablation_scan_seq + 1,
        "ablation_scan_due": plus(e.on, policy.ablation_scan_days),
    }
    changes.update(after_treatment(ctx, s, dest))
    return s.replace(**changes)


def checked_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    return s.replace(ablation_scan_due=None)


TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": EventType.ablation_performed, "source": State.ablation, "dest": State.adjuvant_chemo,
     "conditions": [wants_adjuvant]},
    {"trigger": EventType.ablation_performed, "source": State.ablation, "dest": State.follow_up},
    *(
        {"trigger": EventType.ablation_checked, "source": state, "dest": State.mdt_assessment,
         "conditions": [incomplete]}
        for state in (State.adjuvant_chemo, State.follow_up)
    ),
    *(
        {"trigger": EventType.ablation_checked, "source": state, "dest": None}
        for state in (State.adjuvant_chemo, State.follow_up)
    ),
]
