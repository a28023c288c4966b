"""HTML forms for every event type, derived from the event data models (the definition's EventSpecs).

`form_fields(type)` describes the inputs of one event type's `data` (dates as date inputs, enums as
selects, lists as checkboxes, booleans as yes/no selects, numbers, text); `parse_form(type, form)`
turns a submitted form back into an event `data` dict (with field errors), and `parse_overrides`
reads the override checkboxes and their reasons. Nothing here trusts the form: the engine checks
the event again (the form only spares the user a round trip for obvious mistakes).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Any

from pydantic.fields import FieldInfo

from states.data import IsoDate
from states.definition import DEFINITION
from states.vocabulary import EventType

#: Suggested values for free-text list fields (the spec's examples).
SUGGESTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("mdt_decision", "attendees"): ("liver_surgeon", "radiologist", "oncologist", "pathologist", "nurse"),
}

def help_of(event_type: str) -> str:
    """The line of help shown above an event type's form (its EventSpec's)."""
    return DEFINITION.events[EventType(event_type)].help


def label_of(event_type: str) -> str:
    """How coordinators read an event type ("MDT decision")."""
    return DEFINITION.events[EventType(event_type)].label


@dataclass(frozen=True, slots=True)
class Field:
    """One input of an event form."""

    name: str  # the data field's name in the event (its alias: `for`, not `for_`)
    kind: str  # date | select | bool | checkboxes | int | number | text
    required: bool
    default: Any = None
    choices: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()  # checkboxes of a free-text list: also an "other" text input
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""

    @property
    def input_name(self) -> str:
        return f"data.{self.name}"

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


@dataclass(slots=True)
class ParsedForm:
    data: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the inner type, whether None is allowed) of an annotation like `X | None`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        return (args[0] if len(args) == 1 else annotation), optional
    return annotation, False


def _base(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip `Annotated[...]`: (the base type, its metadata)."""
    metadata: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation, metadata = args[0], [*metadata, *args[1:]]
    return annotation, metadata


def _bounds(metadata: list[Any], info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for item in [*metadata, *info.metadata]:
        for attr in ("ge", "gt"):
            if getattr(item, attr, None) is not None:
                low = getattr(item, attr)
        for attr in ("le", "lt"):
            if getattr(item, attr, None) is not None:
                high = getattr(item, attr)
        for sub in getattr(item, "metadata", ()) or ():
            for attr in ("ge", "gt"):
                if getattr(sub, attr, None) is not None:
                    low = getattr(sub, attr)
            for attr in ("le", "lt"):
                if getattr(sub, attr, None) is not None:
                    high = getattr(sub, attr)
    return low, high


def _field(event_type: str, name: str, info: FieldInfo) -> Field:
    annotation, optional = _unwrap(info.annotation)
    base, metadata = _base(annotation)
    inner_optional = False
    if typing.get_origin(base) in (typing.Union, types.UnionType):
        base, inner_optional = _unwrap(base)
        base, more = _base(base)
        metadata += more
    required = info.is_required()
    default = None if required else info.get_default(call_default_factory=True)
    if isinstance(default, Enum):
        default = default.value
    public = info.alias or name
    low, high = _bounds(metadata, info)
    if annotation is IsoDate or base is date:
        return Field(public, "date", required, default)
    if isinstance(base, type) and issubclass(base, Enum):
        return Field(public, "select", required, default, tuple(str(m.value) for m in base))
    if base is bool:
        return Field(public, "bool", required, default)
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        item, _ = _base(item)
        if isinstance(item, type) and issubclass(item, Enum):
            return Field(public, "checkboxes", required, None, tuple(str(m.value) for m in item))
        return Field(public, "checkboxes", required, None, (), SUGGESTIONS.get((event_type, public), ()))
    if base is int:
        return Field(public, "int", required, default, minimum=low, maximum=high)
    if base is float:
        return Field(public, "number", required, default, minimum=low, maximum=high)
    return Field(public, "text", required, default)


def form_fields(event_type: str | EventType) -> list[Field]:
    """The inputs of the form for `event_type`, in the data model's order."""
    model = DEFINITION.events[EventType(event_type)].data
    return [_field(str(event_type), name, info) for name, info in model.model_fields.items()]


ALL_TYPES: tuple[str, ...] = tuple(str(t) for t in EventType)


def _values(form: Any, name: str) -> list[str]:
    if hasattr(form, "getlist"):
        return [str(v) for v in form.getlist(name)]
    value = form.get(name)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def parse_form(event_type: str, form: Mapping[str, Any]) -> ParsedForm:
    """A submitted form's `data` for `event_type`. Empty inputs are left out (the model's default
    applies); numbers and booleans are converted; what cannot be converted is a field error."""
    out = ParsedForm()
    for f in form_fields(event_type):
        values = [v.strip() for v in _values(form, f.input_name)]
        if f.kind == "checkboxes":
            chosen = [v for v in values if v]
            if f.suggestions:
                chosen += [
                    part.strip()
                    for v in _values(form, f.input_name + ".other")
                    for part in v.replace(";", ",").split(",")
                    if part.strip()
                ]
            chosen = list(dict.fromkeys(chosen))
            if chosen:
                out.data[f.name] = chosen
            continue
        value = values[0] if values else ""
        if value == "":
            continue
        if f.kind == "bool":
            if value not in ("true", "false"):
                out.errors[f.name] = "choose yes or no"
                continue
            out.data[f.name] = value == "true"
        elif f.kind == "int":
            try:
                out.data[f.name] = int(value)
            except ValueError:
                out.errors[f.name] = f"must be a whole number, got {value!r}"
        elif f.kind == "number":
            try:
                number = float(value)
            except ValueError:
                out.errors[f.name] = f"must be a number, got {value!r}"
                continue
            out.data[f.name] = number
        else:
            out.data[f.name] = value
    return out


def parse_overrides(form: Mapping[str, Any]) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The overrides the user ticked (`override` checkboxes naming rule codes), each with the
    reason typed in `override_reason.<CODE>`; a ticked override without a reason is an error."""
    overrides: list[dict[str, str]] = []
    errors: dict[str, str] = {}
    for code in dict.fromkeys(v.strip() for v in _values(form, "override") if v.strip()):
        reasons = _values(form, f"override_reason.{code}")
        reason = reasons[0].strip() if reasons else ""
        if not reason:
            errors[f"override.{code}"] = f"give the reason for overriding {code}"
            continue
        overrides.append({"rule": code, "reason": reason})
    return overrides, errors


def error_field(path: str) -> str:
    """An engine error's field ("data.cycle", "on", "override[0].reason") as a form field name."""
    if path.startswith("data."):
        return path[5:].split(".")[0].split("[")[0]
    return path.split(".")[0].split("[")[0]
