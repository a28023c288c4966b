"""Policy: every number of the pathway, with the spec's defaults (spec section 5, clinical/rules.md).

A hospital overrides any of them from a TOML file (`--policy FILE` or `PATHWAY_POLICY`); the
file is read by `pathway.config`, this module only turns a mapping into a checked `Policy`.
Each value names its source key from clinical/rules.md.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from states.errors import PathwayError
from states.vocabulary import Liver, Regimen


class PolicyError(PathwayError, ValueError):
    """A policy setting is unknown or out of range; the message names the setting and the fix."""


def _per_regimen(fourteen: int, twentyone: int) -> dict[str, int]:
    return {
        Regimen.FOLFOX: fourteen,
        Regimen.FOLFIRI: fourteen,
        Regimen.CAPOX: twentyone,
        Regimen.other: twentyone,
    }


@dataclass(frozen=True)
class Policy:
    #: IANA zone of the clinic: clinical dates are local to it; notify_at is 08:00 there.
    clinic_timezone: str = "Europe/London"
    #: Local time of day at which reminders are sent, "HH:MM".
    notify_time: str = "08:00"
    #: Delivery of reminders: attempts before a reminder is marked `failed` (issue 3).
    delivery_max_attempts: int = 8
    #: Delay before the first retry of a failed delivery; it doubles with each attempt.
    delivery_retry_seconds: int = 60
    #: Longest delay between two attempts.
    delivery_retry_max_seconds: int = 3600
    #: Days between cycles: FOLFOX/FOLFIRI 14 (T5, T6, T8), CAPOX 21 (T7); `other` 21 [U].
    cycle_length_days: dict[str, int] = field(default_factory=lambda: _per_regimen(14, 21))
    #: Pre-operative cycles of perioperative chemotherapy: 6 (q14d) / 4 (q21d) (T9, T10).
    preop_cycles: dict[str, int] = field(default_factory=lambda: _per_regimen(6, 4))
    #: Post-operative (adjuvant) cycles: 6 (q14d) / 4 (q21d) (T9, T10).
    postop_cycles: dict[str, int] = field(default_factory=lambda: _per_regimen(6, 4))
    #: Referral (or a return to the MDT without a date) -> MDT discussion (T4) [U].
    mdt_due_days: int = 14
    #: MDT decision -> first cycle [U].
    first_cycle_days: int = 7
    #: Liver surgery or ablation -> first adjuvant cycle (T20) [U].
    first_adjuvant_cycle_days: int = 42
    #: Last planned pre-op cycle -> restaging scan (T14) [U].
    preop_restaging_days: int = 14
    #: Conversion / systemic therapy: first cycle -> restaging, then every (T13, T36).
    restaging_interval_days: int = 56
    #: Entering the resection stage -> surgery due [U].
    surgery_after_entry_days: int = 14
    #: Last cytotoxic cycle -> hepatectomy (T17) [U].
    surgery_after_last_cycle_days: int = 28
    #: Last bevacizumab dose -> elective surgery, NCCN (T18).
    bevacizumab_washout_days: int = 42
    #: Last bevacizumab dose -> surgery, FDA label minimum (T18).
    bevacizumab_label_min_days: int = 28
    #: Entering portal_vein_embolization from an MDT decision -> PVE due [U].
    pve_due_days: int = 14
    #: PVE (or the first stage of a two-stage hepatectomy) -> volumetry CT (T23).
    flr_scan_days: int = 28
    #: Remnant still too small after PVE -> re-scan (KGR) [U].
    flr_rescan_days: int = 14
    #: Longest wait for hypertrophy after PVE before the MDT reconsiders (T24, PVO-kin: 8 weeks).
    pve_max_wait_days: int = 56
    #: Entering the ablation stage -> ablation due [U].
    ablation_due_days: int = 14
    #: Ablation -> first contrast CT/MRI (T28: 4-6 weeks) [U].
    ablation_scan_days: int = 35
    #: Suspicious surveillance finding -> confirmatory imaging [U].
    imaging_followup_days: int = 14
    #: Surveillance visits, months after the end of treatment (T29, T34).
    surveillance_months: tuple[int, ...] = (3, 6, 9, 12, 15, 18, 21, 24, 30, 36, 42, 48, 54, 60)
    #: Minimal standardized future liver remnant, % (FLR-tab, Madoff).
    flr_threshold: dict[str, float] = field(
        default_factory=lambda: {Liver.normal: 20.0, Liver.chemo_injured: 30.0, Liver.cirrhotic: 40.0}
    )
    #: Weeks of chemotherapy after which a normal liver counts as chemotherapy-injured (FLR-tab, Karoui).
    chemo_injury_weeks: int = 12
    #: Liver surgery or ablation -> earliest chemotherapy cycle (wound healing; Bev label) (T19).
    adjuvant_min_days: int = 28
    #: A cycle earlier than (cycle length - this) days after the previous one needs a confirmation.
    cycle_early_tolerance_days: int = 3
    #: Largest lesion for first-line thermal ablation, cm (COLL-prot, COLL-res).
    ablation_max_lesion_cm: float = 3.0
    #: Days before due_on at which a reminder is sent, by group (spec section 5).
    lead_days: dict[str, int] = field(
        default_factory=lambda: {
            "mdt": 2,
            "chemo": 2,
            "restaging": 7,
            "surgery": 14,
            "flr": 7,
            "ablation": 7,
            "imaging": 7,
            "surveillance": 14,
        }
    )

    #: Cancer waiting times (NHS England CWT guidance v12.1, docs/clinical-rules.md section 3):
    #: the target of each standard in days (C1, C2) ...
    cwt_target_days: dict[str, int] = field(default_factory=lambda: {"62_day": 62, "31_day": 31})
    #: ... and the share of patients each must reach, % (operational standards, C3): shown on the PTL.
    cwt_threshold_percent: dict[str, float] = field(default_factory=lambda: {"62_day": 85.0, "31_day": 96.0})
    #: An open clock with no treatment booked and fewer days left than this is at risk (C8).
    clock_at_risk_days: int = 7
    #: Upper bounds of the patient tracking list's bands of days waited on a 62-day clock (C9):
    #: 0-28, 29-62, 63-104, over 104.
    ptl_bands: tuple[int, ...] = (28, 62, 104)

    # -- derived helpers ---------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.clinic_timezone)  # ZoneInfo caches instances per key

    @property
    def notify_clock(self) -> time:
        hours, minutes = self.notify_time.split(":")
        return time(int(hours), int(minutes))

    def retry_delay(self, attempts: int) -> int:
        """Seconds to wait after the `attempts`-th failed delivery: doubling, capped."""
        return min(self.delivery_retry_max_seconds, self.delivery_retry_seconds * (1 << max(0, attempts - 1)))

    def cycle_length(self, regimen: str) -> int:
        return self.cycle_length_days[regimen]

    def threshold(self, liver: str) -> float:
        return self.flr_threshold[liver]

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, origin: str = "policy") -> Policy:
        """Build a policy from defaults overridden by `data` (e.g. a parsed TOML file).

        Unknown settings, wrong types and out-of-range values raise `PolicyError` naming the
        setting, so a typo in a hospital's file never silently keeps a default.
        """
        base = cls()
        known = {f.name: f for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for name, value in data.items():
            if name not in known:
                raise PolicyError(
                    f"{origin}: unknown setting '{name}'; known settings: {', '.join(sorted(known))}"
                )
            default = getattr(base, name)
            changes[name] = _coerce(f"{origin}: {name}", default, value)
        policy = dataclasses.replace(base, **changes)
        policy.check(origin)
        return policy

    def check(self, origin: str = "policy") -> None:
        try:
            ZoneInfo(self.clinic_timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise PolicyError(
                f"{origin}: clinic_timezone '{self.clinic_timezone}' is not an IANA time zone "
                "(use e.g. 'Europe/London')"
            ) from exc
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", self.notify_time):
            raise PolicyError(f"{origin}: notify_time must be HH:MM (24-hour), got '{self.notify_time}'")
        if self.delivery_max_attempts < 1:
            raise PolicyError(f"{origin}: delivery_max_attempts must be at least 1, got {self.delivery_max_attempts}")
        if self.delivery_retry_seconds < 1 or self.delivery_retry_max_seconds < self.delivery_retry_seconds:
            raise PolicyError(
                f"{origin}: delivery_retry_seconds must be at least 1 and at most delivery_retry_max_seconds "
                f"(got {self.delivery_retry_seconds} and {self.delivery_retry_max_seconds})"
            )
        months = self.surveillance_months
        if not months or any(m <= 0 for m in months) or list(months) != sorted(set(months)):
            raise PolicyError(f"{origin}: surveillance_months must be increasing positive month numbers")
        for name in ("cycle_length_days", "preop_cycles", "postop_cycles"):
            for regimen, value in getattr(self, name).items():
                if value < 1:
                    raise PolicyError(f"{origin}: {name}.{regimen} must be at least 1, got {value}")
        for liver, value in self.flr_threshold.items():
            if not 0 <= value <= 100:
                raise PolicyError(f"{origin}: flr_threshold.{liver} must be 0-100, got {value}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise PolicyError(f"{origin}: {f.name} must not be negative, got {value}")
        for standard in ("62_day", "31_day"):
            if self.cwt_target_days.get(standard, 0) < 1:
                raise PolicyError(f"{origin}: cwt_target_days.{standard} must be at least 1 day")
            if not 0 <= self.cwt_threshold_percent.get(standard, 0) <= 100:
                raise PolicyError(f"{origin}: cwt_threshold_percent.{standard} must be 0-100")
        bands = self.ptl_bands
        if not bands or any(b <= 0 for b in bands) or list(bands) != sorted(set(bands)):
            raise PolicyError(f"{origin}: ptl_bands must be increasing positive day counts, e.g. [28, 62, 104]")
        for group, value in self.lead_days.items():
            if value < 0:
                raise PolicyError(f"{origin}: lead_days.{group} must not be negative, got {value}")

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["surveillance_months"] = list(self.surveillance_months)
        out["ptl_bands"] = list(self.ptl_bands)
        return out


def _coerce(where: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise PolicyError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError(f"{where} must be a whole number, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PolicyError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise PolicyError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise PolicyError(f"{where} must be a list of whole numbers, got {value!r}")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, Mapping):
            raise PolicyError(f"{where} must be a table of settings, got {value!r}")
        merged = dict(default)
        for key, item in value.items():
            if key not in default:
                raise PolicyError(f"{where}: unknown key '{key}'; known keys: {', '.join(sorted(default))}")
            merged[key] = _coerce(f"{where}.{key}", default[key], item)
        return merged
    raise PolicyError(f"{where}: cannot be set")  # pragma: no cover - every field has a type above


DEFAULT_POLICY = Policy()
