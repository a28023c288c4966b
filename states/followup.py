"""Follow-up after treatment, recurrence, and leaving the pathway.

Surveillance every 3 months for 2 years, then every 6 months to 5 years, from the end of
curative treatment (T29, T32, T34: NCCN-tab, ASCO-surv, CRLM-FU). Recurrence goes back to the
MDT: repeat hepatectomy is worthwhile when resectable (Rep-SR, Rep-Adair, Rep-deJong).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from states.context import Ctx, plus
from states.data import DischargedData, EmptyData, RecurrenceData, SurveillanceVisitData, WithdrawnData
from states.facts import Snapshot
from states.planning import surveillance_visits
from states.policy import Policy
from states.stage import EventSpec, Lane, ReminderSpec, Stage, Transition
from states.vocabulary import NON_TERMINAL_STATES, EventType, Finding, ReminderKind, State


def visit_effect(ctx: Ctx[SurveillanceVisitData], s: Snapshot, dest: State) -> Snapshot:
    """A visit closes the pending imaging follow-up if there is one, else the pending visit due
    nearest to it; it closes a pending post-ablation scan too; a suspicious finding asks for imaging."""
    e, d, policy = ctx.event, ctx.data, ctx.policy
    changes: dict[str, Any] = {"ablation_scan_due": None}
    if s.imaging_due is not None:
        changes["imaging_due"] = None
    else:
        visits = surveillance_visits(s, policy)
        if visits:
            mark, _due, _month = min(visits, key=lambda v: (abs((v[1] - e.on).days), v[1]))
            changes["surv_done"] = (*s.surv_done, mark)
    if d.finding is Finding.suspicious:
        changes.update(imaging_seq=s.imaging_seq + 1, imaging_due=plus(e.on, policy.imaging_followup_days))
    return s.replace(**changes)


def recurrence_effect(ctx: Ctx[RecurrenceData], s: Snapshot, dest: State) -> Snapshot:
    """A recurrence during adjuvant chemotherapy counts as progression (spec section 4)."""
    if ctx.snapshot.state is State.adjuvant_chemo:
        return s.replace(progression=f"recurrence during adjuvant chemotherapy on {ctx.event.on.isoformat()}")
    return s


def leaving_follow_up(ctx: Ctx[Any], dest: State) -> Mapping[str, Any]:
    """Imaging asked for by a surveillance visit belongs to follow-up."""
    return {} if dest is State.follow_up else {"imaging_due": None}


# -- the care plan ---------------------------------------------------------------------------------


def plan_surveillance(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    """The visits of the current course not yet done (T29, T34), keyed by the course's anchor."""
    for mark, due, month in surveillance_visits(s, policy):
        yield mark, due, f"surveillance month {month}: history, CEA, CT chest/abdomen/pelvis"


def plan_imaging(s: Snapshot, policy: Policy) -> Iterator[tuple[str, date, str]]:
    if s.imaging_due is not None:
        yield str(s.imaging_seq), s.imaging_due, "imaging after a suspicious surveillance finding"


STAGE = Stage(
    name="follow-up and leaving the pathway",
    events=(
        EventSpec(EventType.surveillance_visit, SurveillanceVisitData, "Surveillance visit", Lane.surveillance,
                  "A surveillance visit took place.", effect=visit_effect),
        EventSpec(EventType.recurrence, RecurrenceData, "Recurrence", Lane.mdt, "Recurrence was found.",
                  effect=recurrence_effect),
        EventSpec(EventType.discharged, DischargedData, "Discharged", Lane.mdt,
                  "The patient was discharged from the pathway."),
        EventSpec(EventType.died, EmptyData, "Died", Lane.mdt, "The patient died."),
        EventSpec(EventType.withdrawn, WithdrawnData, "Withdrawn", Lane.mdt, "The patient left the pathway."),
    ),
    transitions=(
        Transition(EventType.surveillance_visit, State.follow_up, None),
        *(Transition(EventType.recurrence, state, State.mdt_assessment)
          for state in (State.follow_up, State.adjuvant_chemo, State.discharged)),
        *(Transition(EventType.discharged, state, State.discharged) for state in NON_TERMINAL_STATES),
        *(Transition(EventType.died, state, State.deceased) for state in State if state is not State.deceased),
        *(Transition(EventType.withdrawn, state, State.withdrawn) for state in NON_TERMINAL_STATES),
    ),
    reminders=(
        ReminderSpec(ReminderKind.surveillance, "Surveillance visit", "surveillance", Lane.surveillance,
                     frozenset({EventType.surveillance_visit}), frozenset({State.follow_up}), plan_surveillance),
        ReminderSpec(ReminderKind.imaging_followup, "Imaging after a suspicious finding", "imaging", Lane.scan,
                     frozenset({EventType.surveillance_visit, EventType.recurrence}), frozenset({State.follow_up}),
                     plan_imaging),
    ),
    on_state_change=leaving_follow_up,
)
