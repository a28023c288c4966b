"""What a guard, a transition condition or an effect sees: the snapshot, the event (with its data
typed by the event type's model), the policy, and the pathway definition (for the care plan)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from states.facts import Snapshot
from states.policy import Policy
from states.vocabulary import Liver

if TYPE_CHECKING:
    from states.data import EventData
    from states.definition import Definition
    from states.events import Event

D = TypeVar("D", bound="EventData", covariant=True)


@dataclass(frozen=True, slots=True)
class Ctx(Generic[D]):
    snapshot: Snapshot
    event: Event
    policy: Policy
    definition: Definition

    @property
    def data(self) -> D:
        """The event's data, as its type's model (the EventSpec registering a guard or effect for
        an event type ties the two: `Ctx[MdtDecisionData]` for mdt_decision)."""
        return cast(D, self.event.data)


def plus(day: date, days: int) -> date:
    return day + timedelta(days=days)


def effective_liver(recorded: Liver | str, chemo_days: int, policy: Policy) -> Liver:
    """The liver as FLR thresholds see it: a normal liver counts as chemotherapy-injured after
    `chemo_injury_weeks` of chemotherapy since referral (FLR-tab: >=30% after >3 months; Karoui)."""
    liver = Liver(recorded)
    if liver is Liver.normal and chemo_days >= policy.chemo_injury_weeks * 7:
        return Liver.chemo_injured
    return liver
