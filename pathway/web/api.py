"""The HTTP API, /api/v1 (JSON only; OpenAPI at /api/v1/openapi.json).

    POST /api/v1/events              one event or a list (coordinator): results as `record --json`
    GET  /api/v1/patients?state=     [{patient, state}] (viewer)
    GET  /api/v1/patients/{id}       the `show --json` object (viewer)
    GET  /api/v1/worklist?today=&days=   as `worklist --json` (viewer)
    GET  /api/v1/pathway             states, event types, transitions, rules with sources, reminder kinds

Where input is checked: the *envelope* of an event (JSON shape, field names and their JSON types,
`patient` id syntax, `type` among the event types, `on` an ISO date, `override` entries) is checked
here, and a bad one is answered 422 naming the field (`loc`, FastAPI's error format) with nothing
recorded. `by` is refused (422): the server sets it from the login. An event with a well-formed
envelope goes to the engine, which checks `data` and the pathway (future dates, unknown patient,
rules) and answers per event exactly as `pathway record --json` (200; status invalid, refused,
accepted or duplicate).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from pathway.engine import Engine
from pathway.errors import InvalidArgument, UnknownPatient
from pathway.web.security import User, require_api_role
from states import events
from states.definition import DEFINITION
from states.events import PATIENT_ID, unstorable
from states.vocabulary import TERMINAL_STATES, EventType, ReminderKind, Severity, State, Status

MAX_EVENTS = 1000
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"


class _Error(BaseModel):
    detail: Any


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": _Error, "description": "No credentials, or an unknown or revoked token"},
    403: {"model": _Error, "description": "Your role may not do this"},
}

router = APIRouter(tags=["pathway"], responses=_ERRORS)


def engine_of(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


# -- models -----------------------------------------------------------------------------------------


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: str = Field(min_length=1, max_length=64, description="A confirm-level rule code")
    reason: str = Field(min_length=1, max_length=events.REASON_MAX, description="Why the deviation is justified")


class EventIn(BaseModel):
    """One event (the public event contract, section 1), without `by`: the server records the
    authenticated user."""

    model_config = ConfigDict(extra="forbid")
    patient: str = Field(pattern=PATIENT_ID.pattern, description="External patient id")
    type: EventType
    on: str = Field(pattern=ISO_DATE, description="Clinical date YYYY-MM-DD (clinic time zone)",
                    json_schema_extra={"format": "date"})
    key: str | None = Field(default=None, min_length=1, max_length=events.KEY_MAX, description="Idempotency key")
    note: str = Field(default="", max_length=events.NOTE_MAX)
    override: list[Override] = Field(default_factory=list, max_length=events.OVERRIDES_MAX)
    data: dict[str, Any] = Field(default_factory=dict, description="Type-specific fields (checked by the engine)")

    @field_validator("on")
    @classmethod
    def _real_date(cls, value: str) -> str:
        date.fromisoformat(value)  # ValueError -> 422 naming `on`
        return value


_EVENTS = TypeAdapter(EventIn | list[EventIn])
_BODY_SCHEMA = {
    "required": True,
    "content": {"application/json": {"schema": {
        "oneOf": [
            {"$ref": "#/components/schemas/EventIn"},
            {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"}, "maxItems": MAX_EVENTS},
        ]
    }}},
}


class ReasonOut(BaseModel):
    code: str
    severity: Severity
    message: str
    source: str


class EventResult(BaseModel):
    """What happened to one event: the object of `pathway record --json`."""

    index: int = Field(description="Position of the event in the request, from 0")
    line: int = Field(description="index + 1 (as `record --json` numbers lines)")
    patient: str | None
    type: str | None
    status: Status
    state: str | None
    reasons: list[ReasonOut]
    error: str | None
    reevaluated: list[int] | None = Field(
        default=None, description="A late entry or a void: the later events decided again (each kept its outcome)")


class PatientState(BaseModel):
    patient: str
    state: State


class PatientOut(BaseModel):
    """The `pathway show --json` object."""

    patient: str
    primary: str
    state: State
    version: int
    history: list[dict[str, Any]]
    reminders: list[dict[str, Any]]
    advice: list[dict[str, Any]]


class WorklistReminder(BaseModel):
    key: str
    patient: str
    kind: ReminderKind
    due_on: date
    notify_at: str
    status: str
    detail: str
    state: str | None = None
    delivery: str | None = None
    days: int = Field(description="due_on - today: negative when overdue")
    overdue: bool


class WorklistOut(BaseModel):
    today: date
    days: int
    reminders: list[WorklistReminder]


class RuleOut(BaseModel):
    code: str
    severity: Severity
    when: str
    message: str
    source: str


class TransitionOut(BaseModel):
    event: EventType
    source: State
    dest: State | None = Field(description="null: the patient stays in `source`")
    conditional: bool


class StateOut(BaseModel):
    name: State
    terminal: bool
    allowed_events: list[EventType]


class PathwayOut(BaseModel):
    initial: State
    states: list[StateOut]
    event_types: list[EventType]
    transitions: list[TransitionOut]
    rules: list[RuleOut]
    reminder_kinds: list[ReminderKind]


# -- events --------------------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _body_error(loc: list[Any], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ["body", *loc], "msg": msg, "type": kind}])


def _by_errors(payload: Any) -> list[dict[str, Any]]:
    items = payload if isinstance(payload, list) else [payload]
    errors = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and "by" in item:
            loc = ["body", index, "by"] if isinstance(payload, list) else ["body", "by"]
            errors.append({"loc": loc, "msg": "`by` is set by the server from your login: remove it",
                           "type": "extra_forbidden"})
    return errors


def _validation_errors(exc: ValidationError, is_list: bool) -> list[dict[str, Any]]:
    """pydantic's errors of the union, reduced to the branch the payload's shape asked for."""
    branch = "list[EventIn]" if is_list else "EventIn"
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        if loc and loc[0] in ("EventIn", "list[EventIn]"):
            if loc[0] != branch:
                continue
            loc = loc[1:]
        out.append({"loc": ["body", *loc], "msg": error["msg"], "type": error["type"]})
    return out


@router.post(
    "/events",
    response_model=list[EventResult],
    summary="Record one event or a list, in order",
    openapi_extra={"requestBody": _BODY_SCHEMA},
    responses={422: {"description": "Malformed envelope: `detail` names each field (`loc`)"},
               409: {"model": _Error, "description": "A concurrent writer changed a patient: retry"}},
)
async def post_events(request: Request, user: User = Depends(require_api_role("coordinator"))) -> JSONResponse:
    """Apply the events in order; each answered as by `pathway record --json` (status accepted,
    duplicate, refused with reasons, or invalid with the error), with `index` and `line`."""
    raw = await request.body()
    try:
        payload = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _body_error([], f"the body must be JSON: an event object or a list of them ({exc})",
                          "json_invalid") from None
    if not isinstance(payload, dict | list):
        raise _body_error([], "the body must be an event object or a list of event objects", "model_type")
    if isinstance(payload, list) and len(payload) > MAX_EVENTS:
        raise _body_error([], f"at most {MAX_EVENTS} events per request", "too_long")
    # what no column can store (the engine's own check), refused as a malformed request
    text_errors = [{"loc": ["body", *loc], "msg": message, "type": kind} for loc, message, kind in unstorable(payload)]
    if text_errors:
        raise RequestValidationError(text_errors[:20])
    by_errors = _by_errors(payload)
    try:
        parsed = _EVENTS.validate_python(payload)
        errors = by_errors
    except ValidationError as exc:
        errors = by_errors + [e for e in _validation_errors(exc, isinstance(payload, list))
                              if e["loc"][-1] != "by"]
    if errors:
        raise RequestValidationError(errors)
    events = parsed if isinstance(parsed, list) else [parsed]
    try:
        items = [e.model_dump(mode="json", exclude_unset=True) for e in events]
    except ValueError as exc:  # e.g. pydantic's serialization depth limit: the body is bad, not the server
        raise _body_error([], f"the event cannot be serialized: {exc}", "value_error") from None
    engine = engine_of(request)

    def record() -> list[dict[str, Any]]:
        # one transaction: every result answered is stored, or (an exception: 409/503) none is
        return [{"index": i, "line": i + 1, **result.as_dict()}
                for i, result in enumerate(engine.record_batch(items, by=user.name))]

    return JSONResponse(await run_in_threadpool(record))


# -- reads -----------------------------------------------------------------------------------------------


@router.get("/patients", response_model=list[PatientState], summary="Patients, optionally in one state")
def get_patients(request: Request, state: State | None = None,
                 _user: User = Depends(require_api_role("viewer"))) -> JSONResponse:
    rows = engine_of(request).patients(str(state) if state is not None else None)
    return JSONResponse([{"patient": p, "state": s} for p, s in rows])


@router.get(
    "/patients/{patient}",
    response_model=PatientOut,
    summary="One patient: state, history, pending reminders, advice (`show --json`)",
    responses={404: {"model": _Error, "description": "No such patient"}},
)
def get_patient(
    request: Request,
    patient: str,
    as_recorded_at: Annotated[datetime | None, Query(
        description="An instant with a UTC offset: the patient as the engine knew them then")] = None,
    _user: User = Depends(require_api_role("viewer")),
) -> JSONResponse:
    if not PATIENT_ID.match(patient):
        return JSONResponse({"detail": "no such patient"}, status_code=404)
    if as_recorded_at is not None and as_recorded_at.tzinfo is None:
        raise RequestValidationError([{"loc": ["query", "as_recorded_at"], "type": "timezone_aware",
                                       "msg": "must be an instant with a UTC offset, e.g. 2027-03-01T09:00:00Z"}])
    try:
        view = engine_of(request).show(patient, as_recorded_at=as_recorded_at)
    except UnknownPatient:
        return JSONResponse({"detail": f"no patient {patient}"
                             + ("" if as_recorded_at is None else " as recorded then")}, status_code=404)
    return JSONResponse(view.as_dict())


@router.get("/worklist", response_model=WorklistOut, summary="Reminders due by today + days, overdue first")
def get_worklist(
    request: Request,
    today: Annotated[str | None, Query(pattern=ISO_DATE, description="Clinic-local date YYYY-MM-DD",
                                                   json_schema_extra={"format": "date"})] = None,
    days: Annotated[int, Query(ge=0, le=3660)] = 7,
    _user: User = Depends(require_api_role("viewer")),
) -> JSONResponse:
    engine = engine_of(request)
    if today is None:
        day = engine.today()
    else:
        try:
            day = date.fromisoformat(today)
        except ValueError as exc:
            raise RequestValidationError(
                [{"loc": ["query", "today"], "msg": f"not a date: {exc}", "type": "date_from_datetime_parsing"}]
            ) from None
    try:
        items = engine.worklist(day, days)
    except InvalidArgument as exc:  # `today` near the end of the calendar
        raise RequestValidationError([{"loc": ["query", "days"], "msg": str(exc), "type": "value_error"}]) from None
    return JSONResponse({"today": day.isoformat(), "days": days, "reminders": [i.as_dict() for i in items]})


def _transitions() -> list[dict[str, Any]]:
    return [{"event": str(e.event), "source": str(e.source), "dest": None if e.dest is e.source else str(e.dest),
             "conditional": e.conditional} for e in DEFINITION.edges()]


@router.get("/pathway", response_model=PathwayOut, summary="The pathway definition")
def get_pathway(_user: User = Depends(require_api_role("viewer"))) -> JSONResponse:
    """States (with the event types allowed in each), event types, transitions, the rules with
    their severity, message and clinical source, and the kinds of reminder."""
    return JSONResponse({
        "initial": str(DEFINITION.initial),
        "states": [{"name": str(s), "terminal": s in TERMINAL_STATES,
                    "allowed_events": [str(e) for e in DEFINITION.allowed_events(s)]} for s in State],
        "event_types": [str(e) for e in EventType],
        "transitions": _transitions(),
        "rules": [{"code": r.code, "severity": str(r.severity), "when": r.when, "message": r.message,
                   "source": r.source} for r in DEFINITION.rules.values()],
        "reminder_kinds": [str(k) for k in ReminderKind],
    })



def openapi_components() -> dict[str, Any]:
    """Schemas the hand-checked request body refers to (added to the app's OpenAPI components)."""
    schema = EventIn.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"EventIn": schema, **defs}
