"""The event envelope, as a checked value (spec section 1); the `data` models are in states.data.

`parse_event` turns one JSON object into an `Event` or raises `EventValidationError` whose
`errors` name each bad field and say how to fix it. Inputs are strict: unknown fields, wrong types
(a number for a date, a string for a boolean) and out-of-range values are refused, never coerced.
Checks that need the patient's history (dates in order, a known patient, the clock) are not here:
they are in `states.pathway`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from states.data import EventData, IsoDate
from states.definition import DEFINITION
from states.errors import PathwayError
from states.vocabulary import EventType

#: The envelope's limits (the HTTP API's request model uses the same: one contract).
REASON_MAX = 2000  # an override's reason
BY_MAX = 128
KEY_MAX = 200
NOTE_MAX = 4000
OVERRIDES_MAX = 50

PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class EventValidationError(PathwayError, ValueError):
    """The event does not fit the contract. `errors` is a list of (field, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" if field else message for field, message in errors))


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Annotated[str, Field(strict=True)]
    reason: Annotated[str, Field(strict=True, min_length=1, max_length=REASON_MAX)]

    @model_validator(mode="after")
    def _known(self) -> Override:
        if self.rule not in DEFINITION.rules:
            raise ValueError(f"unknown rule code {self.rule!r}; see the rule codes of the pathway")
        if not self.reason.strip():
            raise ValueError(f"the override of {self.rule} needs a reason")
        return self


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    patient: Annotated[str, Field(strict=True, pattern=PATIENT_ID.pattern)]
    type: Annotated[str, Field(strict=True, min_length=1)]
    on: IsoDate
    by: Annotated[str, Field(strict=True, min_length=1, max_length=BY_MAX)] | None = None
    key: Annotated[str, Field(strict=True, min_length=1, max_length=KEY_MAX)] | None = None
    note: Annotated[str, Field(strict=True, max_length=NOTE_MAX)] = ""
    override: list[Override] = Field(default_factory=list, max_length=OVERRIDES_MAX)
    data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One validated event. `data` is the type's checked data model."""

    patient: str
    type: EventType
    on: date
    data: Any
    by: str | None = None
    key: str | None = None
    note: str = ""
    overrides: tuple[Override, ...] = ()
    #: `data` as plain JSON values, computed once (idempotency hashes and the log use it).
    plain_data: dict[str, Any] | None = None

    def overridden(self, code: str) -> Override | None:
        for item in self.overrides:
            if item.rule == code:
                return item
        return None

    def data_dict(self) -> dict[str, Any]:
        return self.plain_data if self.plain_data is not None else dumps_data(self.data)

    def content_hash(self) -> str:
        """What idempotency compares: type, on, data, note and overrides — not `by`."""
        content = {
            "type": str(self.type),
            "on": self.on.isoformat(),
            "data": self.data_dict(),
            "note": self.note,
            "override": [{"rule": o.rule, "reason": o.reason} for o in self.overrides],
        }
        return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"patient": self.patient, "type": str(self.type), "on": self.on.isoformat()}
        if self.by is not None:
            out["by"] = self.by
        if self.key is not None:
            out["key"] = self.key
        if self.note:
            out["note"] = self.note
        if self.overrides:
            out["override"] = [{"rule": o.rule, "reason": o.reason} for o in self.overrides]
        out["data"] = self.data_dict()
        return out


def data_model(event_type: EventType) -> type[EventData]:
    """The data model of an event type (its stage's EventSpec)."""
    return DEFINITION.events[event_type].data


def dumps_data(data: BaseModel) -> dict[str, Any]:
    return data.model_dump(mode="json", by_alias=True, exclude_none=True)


def _loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    text = prefix
    for item in loc:
        if isinstance(item, int):
            text += f"[{item}]"
        else:
            text = f"{text}.{item}" if text else str(item)
    return text


def _messages(exc: ValidationError, prefix: str, model: type[BaseModel] | None = None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(x for x in err["loc"] if x not in ("function-after", "function-before"))
        field = _loc(loc, prefix)
        kind = err["type"]
        if kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            allowed = ""
            if model is not None and len(loc) == 1:
                names = [f.alias or name for name, f in model.model_fields.items()]
                allowed = f"; allowed: {', '.join(names) if names else 'none (this type takes empty data)'}"
            message = f"unknown field{allowed}"
        elif kind == "value_error":
            message = str(err["msg"]).removeprefix("Value error, ")
        else:
            message = str(err["msg"])
            if "input" in err and kind not in ("model_type", "dict_type"):
                message += f" (got {err['input']!r})"
        out.append((field, message))
    return out


INT_RANGE = (-(2**63), 2**63 - 1)


#: Containers nested deeper than this are refused (no event needs more than a few levels).
MAX_DEPTH = 32


def unstorable(value: Any) -> list[tuple[list[str | int], str, str]]:
    """What no database column can hold as given, as (location, message, kind): text with NUL or
    lone surrogates (Python's JSON reader accepts both), integers beyond 64 bits, non-finite numbers
    (1e999), containers nested deeper than MAX_DEPTH. The engine and the HTTP API both refuse these."""
    out: list[tuple[list[str | int], str, str]] = []
    _unstorable(value, [], out, 0)
    return out


def _unstorable(value: Any, loc: list[str | int], out: list[tuple[list[str | int], str, str]], depth: int) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            out.append((loc, "must not contain NUL characters", "string_unicode"))
        elif not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                out.append((loc, "must be valid Unicode text (it holds a lone surrogate)", "string_unicode"))
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT_RANGE[0] <= value <= INT_RANGE[1]:
            out.append((loc, "is out of range (a 64-bit integer at most)", "int_out_of_range"))
    elif isinstance(value, float):
        if not math.isfinite(value):
            out.append((loc, "must be a finite number", "finite_number"))
    elif isinstance(value, Mapping | list | tuple):
        if depth >= MAX_DEPTH:
            out.append((loc, f"is nested too deeply: at most {MAX_DEPTH} levels", "too_deep"))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                name = key if isinstance(key, str) else repr(key)
                _unstorable(name, [*loc, "<key>"], out, depth + 1)  # the key itself
                _unstorable(item, [*loc, name], out, depth + 1)
        else:
            for i, item in enumerate(value):
                _unstorable(item, [*loc, i], out, depth + 1)


def _dotted(loc: list[str | int]) -> str:
    """["data", "sites", 0] -> "data.sites[0]" (a key's own problem names its container)."""
    text = ""
    for part in loc:
        if part == "<key>":
            break
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def storable(value: Any) -> Any:
    """`value` with what `_unstorable` finds made storable (for the audit log of invalid events):
    NUL and lone surrogates escaped, huge integers as text."""
    if isinstance(value, str):
        if value.isascii() and "\x00" not in value:
            return value
        return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if INT_RANGE[0] <= value <= INT_RANGE[1] else str(value)
    if isinstance(value, Mapping):
        return {storable(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return storable(str(value))


def parse_event(raw: Any) -> Event:
    """Check one event object against the contract (spec section 1) and return it typed."""
    if isinstance(raw, Event):
        return raw
    if isinstance(raw, str | bytes):
        try:
            raw = orjson.loads(raw)
        except ValueError as exc:
            raise EventValidationError([("", f"not valid JSON: {storable(str(exc))}")]) from None
    if not isinstance(raw, Mapping):
        raise EventValidationError([("", f"an event must be a JSON object, got {type(raw).__name__}")])
    problems = unstorable(raw)
    if problems:
        raise EventValidationError([(storable(_dotted(loc)), message) for loc, message, _ in problems])
    try:
        envelope = _Envelope.model_validate(dict(raw))
    except ValidationError as exc:
        errors = _messages(exc, "", _Envelope)
        for i, (field, message) in enumerate(errors):
            if field == "patient" and "pattern" in message:
                errors[i] = (field, "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        raise EventValidationError(errors) from None
    try:
        event_type = EventType(envelope.type)
    except ValueError:
        raise EventValidationError(
            [("type", f"unknown event type {envelope.type!r}; known: {', '.join(EventType)}")]
        ) from None
    model = data_model(event_type)
    try:
        data = model.model_validate(envelope.data or {})
    except ValidationError as exc:
        raise EventValidationError(_messages(exc, "data", model)) from None
    return Event(
        patient=envelope.patient,
        type=event_type,
        on=envelope.on,
        data=data,
        by=envelope.by,
        key=envelope.key,
        note=envelope.note,
        overrides=tuple(envelope.override),
        plain_data=dumps_data(data),
    )


__all__ = [
    "Event", "EventValidationError", "IsoDate", "Override", "PATIENT_ID", "data_model", "parse_event", "storable",
    "unstorable",
]
