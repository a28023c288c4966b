"""Follow-up after treatment, recurrence, and leaving the pathway.

Surveillance every 3 months for 2 years, then every 6 months to 5 years, from the end of
curative treatment (T29, T32, T34: NCCN-tab, ASCO-surv, CRLM-FU). Recurrence goes back to the
MDT: repeat hepatectomy is worthwhile when resectable (Rep-SR, Rep-Adair, Rep-deJong).
"""

from __future__ import annotations

from typing import Any

from states.context import Ctx, plus
from states.facts import Snapshot
from states.plan import surveillance_visits
from states.vocabulary import NON_TERMINAL_STATES, EventType, Finding, State


def visit_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    """A visit closes the pending imaging follow-up if there is one, else the pending visit due
    nearest to it; it closes a pending post-ablation scan too; a suspicious finding asks for imaging."""
    e, d, policy = ctx.e, ctx.d, ctx.policy
    changes: dict[str, Any] = {"ablation_scan_due": None}
    if s.imaging_due is not None:
        changes["imaging_due"] = None
    else:
        visits = surveillance_visits(s, policy)
        if visits:
            _key, _due, month = min(visits, key=lambda v: (abs((v[1] - e.on).days), v[1]))
            assert s.surv_anchor is not None
            changes["surv_done"] = (*s.surv_done, f"{s.surv_anchor.isoformat()}:{month}")
    if d.finding is Finding.suspicious:
        changes.update(imaging_seq=s.imaging_seq + 1, imaging_due=plus(e.on, policy.imaging_followup_days))
    return s.replace(**changes)


def recurrence_effect(ctx: Ctx, s: Snapshot, dest: State) -> Snapshot:
    """A recurrence during adjuvant chemotherapy counts as progression (spec section 4)."""
    if ctx.s.state is State.adjuvant_chemo:
        return s.replace(progression=f"recurrence during adjuvant chemotherapy on {ctx.e.on.isoformat()}")
    return s


TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": EventType.surveillance_visit, "source": State.follow_up, "dest": None},
    *(
        {"trigger": EventType.recurrence, "source": state, "dest": State.mdt_assessment}
        for state in (State.follow_up, State.adjuvant_chemo, State.discharged)
    ),
    *({"trigger": EventType.discharged, "source": state, "dest": State.discharged} for state in NON_TERMINAL_STATES),
    *(
        {"trigger": EventType.died, "source": state, "dest": State.deceased}
        for state in State
        if state is not State.deceased
    ),
    *({"trigger": EventType.withdrawn, "source": state, "dest": State.withdrawn} for state in NON_TERMINAL_STATES),
]
