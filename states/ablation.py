"""Thermal ablation (RFA / MWA) and its imaging check.

Ablation is an alternative to resection for lesions up to 3 cm (COLL-prot, COLL-res, COLL-crit);
a first contrast CT/MRI follows at 4-6 weeks (T28, ECIO); an incomplete ablation goes back to the MDT.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from states.context import Ctx, plus
from states.data import AblationCheckedData, AblationPerformedData
from states.facts import Snapshot
from states.policy import Policy
from states.stage import EventSpec, Lane, ReminderSpec, Stage, Transition
from states.surgery import after_treatment, wants_adjuvant
from states.vocabulary import EventType, ReminderKind, State


def incomplete(ctx: Ctx[AblationCheckedData]) -> bool:
    return ctx.data.complete is False


def ablation_effect(ctx: Ctx[AblationPerformedData], s: Snapshot, dest: State) -> Snapshot:
    e, policy = ctx.event, ctx.policy
    changes: dict[str, Any] = {
        "last_procedure_on": e.on,
        "progression": None,  # the window of PROGRESSION_ON_CHEMO restarts at ablation
        "treatment_end": e.on,
        "ablation_scan_seq": s.ablation_scan_seq + 1,
        "ablation_scan_due": plus(e.on, policy.ablation_scan_days),
    }
    changes.update(after_treatment(ctx, s, dest))
    return s.replace(**changes)


def checked_effect(ctx: Ctx[AblationCheckedData], s: Snapshot, dest: State) -> Snapshot:
    return s.replace(ablation_scan_due=None)


def ablation_stays(ctx: Ctx[Any], dest: State) -> Mapping[str, Any]:
    """A new stay in ablation: its own reminder key. The post-ablation scan is kept only through
    adjuvant chemotherapy and follow-up (the states an ablation leads to)."""
    changes: dict[str, Any] = {}
    if dest is State.ablation:
        changes["ablation_seq"] = ctx.snapshot.ablation_seq + 1
    if dest not in (State.adjuvant_chemo, State.follow_up):
        changes["ablation_scan_due"] = None
    return changes


# -- the care plan ---------------------------------------------------------------------------------


def plan_ablation(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    yield str(s.ablation_seq), plus(s.entered_on, policy.ablation_due_days), "thermal ablation"


def plan_ablation_scan(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    """The first contrast CT/MRI after an ablation (T28), through adjuvant chemotherapy or follow-up."""
    if s.ablation_scan_due is not None and (s.state is not State.adjuvant_chemo or s.phase is not None):
        yield str(s.ablation_scan_seq), s.ablation_scan_due, "contrast CT/MRI after ablation"


_AFTER = (State.adjuvant_chemo, State.follow_up)

STAGE = Stage(
    name="thermal ablation",
    events=(
        EventSpec(EventType.ablation_performed, AblationPerformedData, "Ablation performed", Lane.procedure,
                  "Thermal ablation was performed.", effect=ablation_effect, fact=True),
        EventSpec(EventType.ablation_checked, AblationCheckedData, "Post-ablation scan", Lane.scan,
                  "The post-ablation scan was reported.", effect=checked_effect),
    ),
    transitions=(
        Transition(EventType.ablation_performed, State.ablation, State.adjuvant_chemo, when=wants_adjuvant),
        Transition(EventType.ablation_performed, State.ablation, State.follow_up),
        *(Transition(EventType.ablation_checked, state, State.mdt_assessment, when=incomplete) for state in _AFTER),
        *(Transition(EventType.ablation_checked, state, None) for state in _AFTER),
    ),
    reminders=(
        ReminderSpec(ReminderKind.ablation_due, "Ablation due", "ablation", Lane.procedure,
                     frozenset({EventType.ablation_performed}), frozenset({State.ablation}), plan_ablation),
        ReminderSpec(ReminderKind.ablation_scan, "Post-ablation scan", "ablation", Lane.scan,
                     frozenset({EventType.ablation_checked, EventType.surveillance_visit}), frozenset(_AFTER),
                     plan_ablation_scan),
    ),
    on_state_change=ablation_stays,
)
