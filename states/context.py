"""What a guard, a transition condition or an effect sees: the snapshot, the event, the policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from states.events import Event
from states.facts import Snapshot
from states.policy import Policy
from states.vocabulary import Liver


@dataclass(frozen=True, slots=True)
class Ctx:
    s: Snapshot
    e: Event
    policy: Policy

    @property
    def d(self) -> Any:
        return self.e.data


def plus(day: date, days: int) -> date:
    return day + timedelta(days=days)


def effective_liver(recorded: Liver | str, chemo_days: int, policy: Policy) -> Liver:
    """The liver as FLR thresholds see it: a normal liver counts as chemotherapy-injured after
    `chemo_injury_weeks` of chemotherapy since referral (FLR-tab: >=30% after >3 months; Karoui)."""
    liver = Liver(recorded)
    if liver is Liver.normal and chemo_days >= policy.chemo_injury_weeks * 7:
        return Liver.chemo_injured
    return liver
