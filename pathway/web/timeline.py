"""A patient's course as SVG on a date axis: actual events from the history (cycles, delays,
procedures, scans, visits, decisions; refusals marked) and the pending reminders as the plan, in
the lanes the pathway definition gives each event type and reminder kind (states.stage.Lane). No
JavaScript, no inline styles (the CSP forbids both).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from html import escape
from typing import Any

from states.definition import DEFINITION
from states.stage import Lane
from states.vocabulary import ReminderKind


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


# -- the timeline ----------------------------------------------------------------------------------

#: The lanes, top to bottom, and which lane each event type and reminder kind is drawn in.
LANES: tuple[Lane, ...] = tuple(Lane)
_TYPE_LANE = {str(t): LANES.index(spec.lane) for t, spec in DEFINITION.events.items()}
_KIND_LANE = {str(k): LANES.index(spec.lane) for k, spec in DEFINITION.reminders.items()}

LANE_H = 44
LABEL_W = 170
PLOT_W = 820
TOP = 28


def _lane_of_type(type_: str | None) -> int:
    """The lane of an event type (an invalid submission without a known type: the first)."""
    return _TYPE_LANE.get(str(type_), 0)


def _lane_of_kind(kind: str) -> int:
    return _KIND_LANE[str(ReminderKind(kind))]


def _get(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, dict):
        return item.get(name, default)
    return getattr(item, name, default)


def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def _delay_end(entry: Any) -> date | None:
    on = _as_date(_get(entry, "on"))
    data = _get(entry, "data") or {}
    if on is None:
        return None
    if data.get("until"):
        return _as_date(data["until"])
    if isinstance(data.get("days"), int):
        return on + timedelta(days=data["days"])
    return on


def _describe(entry: Any) -> str:
    data = _get(entry, "data") or {}
    bits = [f"{_get(entry, 'on')}: {_get(entry, 'type')}"]
    detail = ", ".join(f"{k}={v if not isinstance(v, list) else '/'.join(map(str, v))}" for k, v in data.items())
    if detail:
        bits.append(f"({detail})")
    status = _get(entry, "status")
    if status and status != "accepted":
        bits.append(f"\u2014 {status}")
        codes = [r.get("code", "") for r in (_get(entry, "reasons") or ()) if r.get("severity") != "advice"]
        if codes:
            bits.append(": " + ", ".join(codes))
    if _get(entry, "voided_by") is not None:
        bits.append("\u2014 voided")
    overrides = _get(entry, "override") or ()
    if overrides:
        bits.append("\u2014 override " + ", ".join(o.get("rule", "") for o in overrides))
    return " ".join(bits)


def timeline(history: Iterable[Any], reminders: Iterable[Any], today: date | None = None) -> str:
    """The patient's course as SVG: actual events (filled) and pending reminders (hollow, the plan)
    on a date axis; cycle delays as bars; refused events as red crosses; voided events greyed."""
    entries = [h for h in history if _as_date(_get(h, "on")) is not None and _get(h, "status") != "duplicate"]
    planned = [r for r in reminders if _get(r, "status", "pending") == "pending" and _as_date(_get(r, "due_on"))]
    dates: list[date] = [d for h in entries if (d := _as_date(_get(h, "on")))]
    dates += [d for h in entries if _get(h, "type") == "cycle_delayed" and (d := _delay_end(h))]
    dates += [d for r in planned if (d := _as_date(_get(r, "due_on")))]
    if today is not None:
        dates.append(today)
    height = TOP + LANE_H * len(LANES) + 34
    width = LABEL_W + PLOT_W + 20
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="tl-title">'
        '<title id="tl-title">Timeline: actual events (filled) and the planned care (hollow)</title>'
    )
    if not dates:
        return head + '<text x="10" y="30" font-size="13">No events yet.</text></svg>'
    start, end = min(dates), max(dates)
    start -= timedelta(days=7)
    end += timedelta(days=7)
    span = max((end - start).days, 1)

    def x(d: date) -> float:
        return LABEL_W + (d - start).days / span * PLOT_W

    def y(lane: int) -> float:
        return TOP + lane * LANE_H + LANE_H / 2

    out = [head]
    for i, lane in enumerate(LANES):
        key, label = lane.name, lane.label
        top = TOP + i * LANE_H
        out.append(
            f'<g class="lane lane-{key}"><rect x="0" y="{top}" width="{width}" height="{LANE_H}" '
            f'fill="{"#f8fafc" if i % 2 == 0 else "#ffffff"}"/>'
            f'<text x="6" y="{top + LANE_H / 2 + 4:.0f}" font-size="12" fill="#111">{_e(label)}</text></g>'
        )
    # axis: month ticks (or years when the course is long)
    axis_y = TOP + LANE_H * len(LANES)
    out.append(f'<line x1="{LABEL_W}" y1="{axis_y}" x2="{LABEL_W + PLOT_W}" y2="{axis_y}" stroke="#333"/>')
    step_months = 1 if span <= 400 else (3 if span <= 1000 else 6)
    tick = date(start.year, start.month, 1)
    while tick <= end:
        if tick >= start:
            tx = x(tick)
            out.append(
                f'<line class="tick" x1="{tx:.1f}" y1="{TOP}" x2="{tx:.1f}" y2="{axis_y + 4}" stroke="#e5e7eb"/>'
                f'<text x="{tx:.1f}" y="{axis_y + 16}" font-size="10" text-anchor="middle" fill="#444">'
                f'{_e(tick.strftime("%b %Y") if tick.month == 1 or step_months > 1 else tick.strftime("%b"))}</text>'
            )
        month = tick.month - 1 + step_months
        tick = date(tick.year + month // 12, month % 12 + 1, 1)
    if today is not None:
        tx = x(today)
        out.append(
            f'<g class="today"><line x1="{tx:.1f}" y1="{TOP - 8}" x2="{tx:.1f}" y2="{axis_y}" stroke="#2563eb" '
            f'stroke-dasharray="4 3"/><text x="{tx:.1f}" y="{TOP - 12}" font-size="10" text-anchor="middle" '
            f'fill="#2563eb">today {_e(today.isoformat())}</text></g>'
        )
    # plan: pending reminders, hollow
    for r in planned:
        d = _as_date(_get(r, "due_on"))
        assert d is not None
        kind = str(_get(r, "kind"))
        lane = _lane_of_kind(kind)
        detail = _get(r, "detail") or ""
        out.append(
            f'<g class="planned kind-{_e(kind)}" data-kind="{_e(kind)}" data-date="{d.isoformat()}">'
            f"<title>planned {_e(kind)} due {d.isoformat()}{': ' + _e(detail) if detail else ''}</title>"
            f'<circle cx="{x(d):.1f}" cy="{y(lane):.1f}" r="6" fill="#ffffff" stroke="#2563eb" '
            f'stroke-width="2" stroke-dasharray="3 2"/></g>'
        )
    # actual: the history
    for h in entries:
        d = _as_date(_get(h, "on"))
        assert d is not None
        type_ = str(_get(h, "type"))
        status = str(_get(h, "status"))
        lane = _lane_of_type(type_)
        cx, cy = x(d), y(lane)
        voided = _get(h, "voided_by") is not None
        classes = ["actual", f"type-{type_}", f"status-{status}"]
        if voided:
            classes.append("voided")
        if _get(h, "override"):
            classes.append("overridden")
        title = f"<title>{_e(_describe(h))}</title>"
        attrs = f'class="{_e(" ".join(classes))}" data-type="{_e(type_)}" data-date="{d.isoformat()}" data-status="{_e(status)}"'
        if status in ("refused", "invalid"):
            s = 5
            out.append(
                f"<g {attrs}>{title}<path d=\"M{cx - s:.1f},{cy - s:.1f} L{cx + s:.1f},{cy + s:.1f} "
                f'M{cx - s:.1f},{cy + s:.1f} L{cx + s:.1f},{cy - s:.1f}" stroke="#dc2626" stroke-width="2.5"/></g>'
            )
            continue
        fill = "#9ca3af" if voided else "#1e3a8a"
        if type_ == "cycle_delayed":
            until = _delay_end(h) or d
            out.append(
                f'<g {attrs}>{title}<rect x="{cx:.1f}" y="{cy - 4:.1f}" width="{max(x(until) - cx, 2):.1f}" '
                f'height="8" fill="{"#9ca3af" if voided else "#f59e0b"}" rx="2"/></g>'
            )
        elif type_ in ("surgery", "ablation_performed", "pve_performed"):
            s = 8
            out.append(
                f'<g {attrs}>{title}<path d="M{cx:.1f},{cy - s:.1f} L{cx + s:.1f},{cy:.1f} L{cx:.1f},{cy + s:.1f} '
                f'L{cx - s:.1f},{cy:.1f} z" fill="{fill if voided else "#7c3aed"}"/></g>'
            )
        elif type_ in ("restaging", "ablation_checked"):
            out.append(
                f'<g {attrs}>{title}<rect x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" '
                f'fill="{fill if voided else "#0f766e"}"/></g>'
            )
        elif type_ in ("recurrence", "died"):
            out.append(
                f'<g {attrs}>{title}<path d="M{cx:.1f},{cy - 7:.1f} L{cx + 7:.1f},{cy + 6:.1f} '
                f'L{cx - 7:.1f},{cy + 6:.1f} z" fill="{fill if voided else "#b91c1c"}"/></g>'
            )
        else:
            r = 5 if type_ != "cycle_given" else 6
            out.append(
                f'<g {attrs}>{title}<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r}" fill="{fill}"'
                + (' stroke="#f59e0b" stroke-width="2.5"' if _get(h, "override") else "")
                + "/></g>"
            )
        if type_ == "cycle_given":
            cycle = (_get(h, "data") or {}).get("cycle")
            if cycle is not None:
                out.append(
                    f'<text x="{cx:.1f}" y="{cy - 9:.1f}" font-size="9" text-anchor="middle" fill="#111">'
                    f"{_e(cycle)}</text>"
                )
    out.append(_timeline_legend(height - 6))
    out.append("</svg>")
    return "\n".join(out)


def _timeline_legend(y: float) -> str:
    items = [
        ('<circle cx="{x}" cy="{y}" r="5" fill="#1e3a8a"/>', "done"),
        ('<circle cx="{x}" cy="{y}" r="5" fill="#fff" stroke="#2563eb" stroke-width="2" stroke-dasharray="3 2"/>',
         "planned"),
        ('<rect x="{x0}" y="{y0}" width="14" height="8" fill="#f59e0b"/>', "delay"),
        ('<path d="M{x0},{y0} l8,8 M{x0},{y8} l8,-8" stroke="#dc2626" stroke-width="2.5"/>', "refused"),
        ('<circle cx="{x}" cy="{y}" r="5" fill="#1e3a8a" stroke="#f59e0b" stroke-width="2.5"/>', "overridden"),
        ('<circle cx="{x}" cy="{y}" r="5" fill="#9ca3af"/>', "voided"),
    ]
    out = ['<g class="legend">']
    lx = LABEL_W
    for shape, label in items:
        out.append(shape.format(x=lx, y=y - 4, x0=lx - 5, y0=y - 8, y8=y))
        out.append(f'<text x="{lx + 10}" y="{y}" font-size="10" fill="#333">{_e(label)}</text>')
        lx += 90
    out.append("</g>")
    return "".join(out)
