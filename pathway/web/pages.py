"""The coordinator pages: the worklist, the patient page, and the forms that record events.

Server-rendered (Jinja2), working without JavaScript; htmx only makes the worklist filters
refresh in place. Recording goes through the same engine as the CLI and the API, with `by` the
logged-in user. A refused event comes back inline with each reason's message and source, and
confirm-level reasons offer an override that needs a reason.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from pathway.engine import Engine, Result
from pathway.errors import UnknownPatient
from pathway.web import diagram, forms, timeline
from pathway.web.security import User, page_user, require_page_role, verify_csrf
from pathway.web.templating import templates
from states.definition import DEFINITION
from states.events import PATIENT_ID
from states.vocabulary import EventType, ReminderKind, Severity, State, Status

router = APIRouter()

WORKLIST_DAYS = 7


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def rag(days: int) -> str:
    """Red (overdue), amber (due within 2 days), green (later)."""
    if days < 0:
        return "red"
    if days <= 2:
        return "amber"
    return "green"


# -- the worklist ----------------------------------------------------------------------------------


def _worklist_context(request: Request, kind: str, state: str, patient: str) -> dict[str, Any]:
    engine = _engine(request)
    today = engine.today()
    items = engine.worklist(today, WORKLIST_DAYS)
    needle = patient.strip().lower()
    shown = [
        item
        for item in items
        if (not kind or item.reminder.kind == kind)
        and (not state or item.reminder.state == state)
        and (not needle or needle in item.reminder.patient.lower())
    ]
    sections = [
        ("overdue", "Overdue", [i for i in shown if i.days < 0]),
        ("today", "Today", [i for i in shown if i.days == 0]),
        ("week", f"Next {WORKLIST_DAYS} days", [i for i in shown if i.days > 0]),
    ]
    counts = engine.counts_by_state()
    return {
        "today": today,
        "sections": sections,
        "total": len(items),
        "shown": len(shown),
        "failed": sum(1 for i in shown if i.reminder.delivery == "failed"),
        "counts": [(str(s), counts.get(str(s), 0)) for s in State],
        "kinds": [str(k) for k in ReminderKind],
        "states": [str(s) for s in State],
        "filters": {"kind": kind, "state": state, "patient": patient},
        "rag": rag,
    }


@router.get("/")
def worklist(
    request: Request,
    kind: str = "",
    state: str = "",
    patient: str = "",
    user: User = Depends(page_user),
) -> Response:
    kind = kind if kind in {str(k) for k in ReminderKind} else ""
    state = state if state in {str(s) for s in State} else ""
    patient = patient[:64]
    context = _worklist_context(request, kind, state, patient)
    context.update(_referral_context(user))
    return templates.TemplateResponse(request, "worklist.html", context)


def _referral_context(user: User, values: dict[str, Any] | None = None, result: Result | None = None,
                      errors: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "can_record": user.can("coordinator"),
        "referral": {
            "type": "referral",
            "fields": forms.form_fields("referral"),
            "help": forms.help_of("referral"),
            "values": values or {},
            "errors": errors or {},
            "result": result,
            "key": (values or {}).get("key") or _new_key(),
            "action": "/events",
            "open": result is not None or bool(errors),
        },
    }


# -- the patient page -------------------------------------------------------------------------------


def _new_key() -> str:
    return "web-" + secrets.token_hex(8)


def _event_forms(state: str, open_type: str | None, values: dict[str, Any], errors: dict[str, str],
                 result: Result | None, patient: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    try:
        allowed = [str(t) for t in DEFINITION.allowed_events(State(state))]
    except ValueError:
        allowed = []
    made: list[dict[str, Any]] = []
    for event_type in forms.ALL_TYPES:
        if event_type == "referral":
            continue
        mine = event_type == open_type
        made.append({
            "type": event_type,
            "fields": forms.form_fields(event_type),
            "help": forms.help_of(event_type),
            "values": values if mine else {},
            "errors": errors if mine else {},
            "result": result if mine else None,
            "key": (values.get("key") if mine else None) or _new_key(),
            "action": f"/patients/{quote(patient)}/events",
            "open": mine,
            "allowed": event_type in allowed,
        })
    return [f for f in made if f["allowed"]], [f for f in made if not f["allowed"]]


def _patient_response(request: Request, user: User, patient: str, *, open_type: str | None = None,
                      values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                      result: Result | None = None, status_code: int = 200) -> Response:
    engine = _engine(request)
    if not PATIENT_ID.match(patient):
        raise HTTPException(404, f"no patient {patient!r}")
    try:
        view = engine.show(patient)
    except UnknownPatient:
        raise HTTPException(404, f"no patient {patient}") from None
    today = engine.today()
    allowed_forms, other_forms = _event_forms(view.state, open_type, values or {}, errors or {}, result, patient)
    context = {
        "view": view,
        "today": today,
        "history": list(reversed(view.history)),
        "reminders": sorted(view.reminders, key=lambda r: (r.due_on, r.kind)),
        "days_to": lambda d: (d - today).days,
        "rag": rag,
        "timeline_svg": timeline.timeline(view.history, view.reminders, today),
        "diagram_svg": diagram.pathway_diagram(view.state),
        "can_record": user.can("coordinator"),
        "allowed_forms": allowed_forms,
        "other_forms": other_forms,
        "recorded": request.query_params.get("recorded", ""),
    }
    return templates.TemplateResponse(request, "patient.html", context, status_code=status_code)


@router.get("/patients/{patient}")
def patient_page(request: Request, patient: str, user: User = Depends(page_user)) -> Response:
    return _patient_response(request, user, patient)


# -- recording ------------------------------------------------------------------------------------


def _form_values(form: Any) -> dict[str, Any]:
    """What the user submitted, to fill the form again (lists for multi-valued inputs)."""
    out: dict[str, Any] = {}
    for name in set(form.keys()):
        if name == "csrf":
            continue
        values = form.getlist(name)
        out[name] = values if len(values) > 1 or name.endswith(("attendees", "sites")) or name == "override" else values[0]
    return out


def _build_event(event_type: str, patient: str, form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    parsed = forms.parse_form(event_type, form)
    overrides, override_errors = forms.parse_overrides(form)
    errors = {**parsed.errors, **override_errors}
    event: dict[str, Any] = {
        "patient": patient,
        "type": event_type,
        "on": str(form.get("on") or "").strip(),
        "data": parsed.data,
    }
    note = str(form.get("note") or "").strip()
    if note:
        event["note"] = note
    key = str(form.get("key") or "").strip()
    if key:
        event["key"] = key[:200]
    if overrides:
        event["override"] = overrides
    if not event["on"]:
        errors["on"] = "give the date of the event"
    return event, errors


def _engine_errors(result: Result) -> dict[str, str]:
    errors: dict[str, str] = {}
    for path, message in result.errors:
        errors.setdefault(forms.error_field(path) or "_", message)
    if not errors and result.error:
        errors["_"] = result.error
    return errors


async def _record(request: Request, user: User, patient: str, event_type: str) -> tuple[Result | None, dict[str, Any], dict[str, str]]:
    form = await request.form()
    values = _form_values(form)
    if event_type not in forms.ALL_TYPES:
        return None, values, {"type": f"unknown event type {event_type!r}"}
    event, errors = _build_event(event_type, patient, form)
    if errors:
        return None, values, errors
    # a write transaction (an fsync on SQLite): in the thread pool, not on the event loop
    result = await run_in_threadpool(_engine(request).record, event, by=user.name)
    if result.status is Status.invalid:
        return result, values, _engine_errors(result)
    return result, values, {}


@router.post("/patients/{patient}/events", dependencies=[Depends(verify_csrf)])
async def record_event(request: Request, patient: str,
                       user: User = Depends(require_page_role("coordinator"))) -> Response:
    form = await request.form()
    event_type = str(form.get("type") or "")
    if event_type == "referral":
        raise HTTPException(400, "a referral is recorded from the worklist's 'Refer a new patient' form")
    result, values, errors = await _record(request, user, patient, event_type)
    if result is not None and result.ok:
        return RedirectResponse(
            f"/patients/{quote(patient)}?recorded={quote(event_type)}#history", status_code=303
        )
    status_code = 409 if result is not None and result.status is Status.refused else 422
    return _patient_response(request, user, patient, open_type=event_type, values=values, errors=errors,
                             result=result, status_code=status_code)


@router.post("/events", dependencies=[Depends(verify_csrf)])
async def refer_patient(request: Request, user: User = Depends(require_page_role("coordinator"))) -> Response:
    form = await request.form()
    patient = str(form.get("patient") or "").strip()
    errors: dict[str, str] = {}
    if not PATIENT_ID.match(patient):
        errors["patient"] = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        result, values = None, _form_values(form)
    else:
        result, values, errors = await _record(request, user, patient, "referral")
    if result is not None and result.ok:
        return RedirectResponse(f"/patients/{quote(patient)}?recorded=referral", status_code=303)
    context = _worklist_context(request, "", "", "")
    context.update(_referral_context(user, values, result, errors))
    status_code = 409 if result is not None and result.status is Status.refused else 422
    return templates.TemplateResponse(request, "worklist.html", context, status_code=status_code)


def confirmable(result: Result | None) -> list[Any]:
    """The reasons of a refusal the user may override (confirm-level)."""
    if result is None or result.status is not Status.refused:
        return []
    return [r for r in result.reasons if r.severity is Severity.confirm]


templates.env.globals.update(confirmable=confirmable, event_types=[str(t) for t in EventType])
