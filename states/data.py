"""The `data` of every event type, as checked models (spec section 3).

Inputs are strict: unknown fields, wrong types (a number for a date, a string for a boolean) and
out-of-range values are refused, never coerced. Each stage's `EventSpec` names its type's model;
`states.definition` checks that every event type has one.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

from states.vocabulary import (
    Biologic,
    Bookable,
    Braf,
    DischargeReason,
    Extent,
    Extrahepatic,
    Finding,
    Liver,
    Margin,
    Msi,
    PathologicalResponse,
    Plan,
    Primary,
    Procedure,
    Ras,
    ReferralRoute,
    Regimen,
    Resectability,
    Response,
    Risk,
    Sidedness,
    Site,
    StopReason,
    Technique,
)

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: Any) -> date:
    if isinstance(value, datetime):
        raise ValueError("must be a date YYYY-MM-DD, not a date and time")
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError(f"must be a date YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a real calendar date") from None


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Percent = Annotated[float, Field(strict=True, ge=0, le=100)]


class EventData(BaseModel):
    """The base of every event type's data model."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ReferralData(EventData):
    primary: Primary
    centre: Annotated[str, Field(max_length=200)] | None = None
    high_volume_centre: StrictBool = True
    prior_chemo: StrictBool = False
    #: How the cancer was referred: urgent suspected cancer, screening and consultant upgrade open
    #: a 62-day waiting-time clock; known_cancer (already diagnosed) opens none.
    route: ReferralRoute = ReferralRoute.known_cancer
    #: When the referral was received (the 62-day clock starts then); default: the event date.
    received_on: IsoDate | None = None


class MdtScheduledData(EventData):
    meeting_on: IsoDate


class MdtDecisionData(EventData):
    attendees: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1)]
    plan: Plan
    extent: Extent = Extent.major
    resectability: Resectability
    complete_resection_feasible: StrictBool | None = None
    operative_risk: Risk | None = None
    extrahepatic: Extrahepatic = Extrahepatic.none
    flr_percent: Percent | None = None
    liver: Liver = Liver.normal
    lesion_count: Annotated[int, Field(strict=True, ge=1, le=1000)] | None = None
    largest_lesion_cm: Annotated[float, Field(strict=True, gt=0, le=50)] | None = None
    bilobar: StrictBool | None = None
    regimen: Regimen | None = None
    biologic: Biologic = Biologic.none
    ras: Ras | None = None
    sidedness: Sidedness | None = None
    #: Earliest clinically appropriate date of a subsequent treatment: its 31-day clock starts then.
    ecad: IsoDate | None = None

    @model_validator(mode="after")
    def _surgical_fields(self) -> MdtDecisionData:
        if self.plan not in (Plan.systemic_therapy, Plan.surveillance):
            missing = [
                name
                for name in ("complete_resection_feasible", "operative_risk")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"plan {self.plan} needs {' and '.join(missing)} "
                    "(required unless plan is systemic_therapy or surveillance)"
                )
        return self


class CycleGivenData(EventData):
    cycle: Annotated[int, Field(strict=True, ge=1, le=1000)] | None = None
    regimen: Regimen | None = None
    biologic: Biologic | None = None


class CycleDelayedData(EventData):
    days: Annotated[int, Field(strict=True, ge=1, le=56)] | None = None
    until: IsoDate | None = None
    reason: Annotated[str, Field(strict=True, min_length=1, max_length=2000)]

    @model_validator(mode="after")
    def _one_of(self) -> CycleDelayedData:
        if (self.days is None) == (self.until is None):
            raise ValueError("give exactly one of 'days' (1-56) or 'until' (a date)")
        return self


class ChemoStoppedData(EventData):
    reason: StopReason


class BiomarkerData(EventData):
    ras: Ras | None = None
    braf: Braf | None = None
    msi: Msi | None = None
    sidedness: Sidedness | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> BiomarkerData:
        if all(getattr(self, name) is None for name in ("ras", "braf", "msi", "sidedness")):
            raise ValueError("give at least one of ras, braf, msi, sidedness")
        return self


class BookedData(EventData):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    what: Bookable
    for_: IsoDate = Field(alias="for")


class RestagingData(EventData):
    response: Response
    resectable: StrictBool | None = None
    flr_percent: Percent | None = None
    disappeared_lesions: Annotated[int, Field(strict=True, ge=0, le=1000)] = 0


class EmptyData(EventData):
    pass


class SurgeryData(EventData):
    procedure: Procedure
    margin: Margin | None = None
    adjuvant: StrictBool | None = None
    pathological_response: PathologicalResponse | None = None

    @model_validator(mode="after")
    def _by_procedure(self) -> SurgeryData:
        if self.procedure is Procedure.exploration_only:
            if self.margin is not None:
                raise ValueError("margin is not given for exploration_only (nothing was resected)")
        elif self.margin is None:
            raise ValueError(f"margin (R0, R1 or R2) is required for procedure {self.procedure}")
        if self.adjuvant is None and self.procedure not in (
            Procedure.two_stage_first,
            Procedure.exploration_only,
        ):
            raise ValueError(
                f"adjuvant (true or false) is required for procedure {self.procedure}: "
                "is post-operative chemotherapy planned?"
            )
        return self


class AblationPerformedData(EventData):
    technique: Technique
    adjuvant: StrictBool = False


class AblationCheckedData(EventData):
    complete: StrictBool


class SurveillanceVisitData(EventData):
    cea: Annotated[float, Field(strict=True, ge=0, le=100000)] | None = None
    finding: Finding


class RecurrenceData(EventData):
    sites: Annotated[list[Site], Field(min_length=1)]


class DischargedData(EventData):
    reason: DischargeReason | None = None


class WithdrawnData(EventData):
    reason: Annotated[str, Field(strict=True, max_length=2000)] | None = None


class VoidData(EventData):
    reason: Annotated[str, Field(strict=True, min_length=1, max_length=2000)]
    #: The event to undo, by its idempotency key or by its number in the history (`#12`); neither:
    #: the patient's latest effective event.
    target_key: Annotated[str, Field(strict=True, min_length=1, max_length=200)] | None = None
    target_event: Annotated[int, Field(strict=True, ge=1)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> VoidData:
        if self.target_key is not None and self.target_event is not None:
            raise ValueError("name the event to void once: target_key or target_event, not both")
        return self
