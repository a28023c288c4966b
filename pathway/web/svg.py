"""SVG pictures for the coordinator pages, computed here (no JavaScript, no inline styles: the CSP
forbids both). Colours are presentation attributes so that the pictures read even without CSS;
classes let pages.css refine them.

- `pathway_diagram(current)`: the pathway's states and transitions, generated from the one
  `transitions` machine (states.machine.MACHINE), in a layered layout computed from it, with the
  patient's current state highlighted.
- `timeline(history, reminders, today)`: a patient's course on a date axis: actual events from the
  history (cycles, delays, procedures, scans, visits, decisions; refusals marked) and the pending
  reminders as the plan.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape
from typing import Any

from states.machine import INITIAL, MACHINE
from states.vocabulary import NON_TERMINAL_STATES, TERMINAL_STATES, State


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


# -- the pathway diagram ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    dest: str
    labels: tuple[str, ...]


@dataclass(slots=True)
class Graph:
    """The pathway as drawn: states by layer, edges between states, and what is not drawn as an
    edge (transitions every non-terminal state shares; events that keep the state)."""

    layers: list[list[str]]
    edges: list[Edge]
    #: (event, dest, sources) shared by every non-terminal state; drawn only from the initial state.
    common: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    #: state -> events that keep the patient in it (specific to that state).
    loops: dict[str, list[str]] = field(default_factory=dict)
    #: events that keep the state in every non-terminal state.
    common_loops: list[str] = field(default_factory=list)

    def layer_of(self, state: str) -> int:
        for i, layer in enumerate(self.layers):
            if state in layer:
                return i
        raise KeyError(state)


def pathway_graph(machine: Any = MACHINE) -> Graph:
    """Read the machine's states and transitions and lay them out in layers.

    Layer = longest path from the initial state over *forward* edges, where an edge is forward when
    a breadth-first search from the initial state reaches its destination later than its source;
    terminal states form the last layer."""
    order = {str(s): i for i, s in enumerate(State)}
    states = sorted((str(s) for s in machine.states), key=lambda s: order.get(s, len(order)))
    non_terminal = {str(s) for s in NON_TERMINAL_STATES}
    terminal = {str(s) for s in TERMINAL_STATES}

    sources: dict[tuple[str, str | None], set[str]] = {}
    for name, event in machine.events.items():
        for source, transitions in event.transitions.items():
            for t in transitions:
                sources.setdefault((name, t.dest), set()).add(source)

    common: list[tuple[str, str, tuple[str, ...]]] = []
    common_loops: list[str] = []
    loops: dict[str, list[str]] = {}
    pairs: dict[tuple[str, str], list[str]] = {}
    for (name, dest), srcs in sources.items():
        shared = srcs >= (non_terminal - ({dest} if dest else set())) and len(srcs) > 2
        if dest is None:
            if shared:
                common_loops.append(name)
            else:
                for s in sorted(srcs, key=order.__getitem__):
                    loops.setdefault(s, []).append(name)
            continue
        if shared:
            common.append((name, dest, tuple(sorted(srcs, key=order.__getitem__))))
        for s in srcs:
            if s == dest:
                continue
            if shared and (s != str(INITIAL) or dest in terminal):
                continue
            pairs.setdefault((s, dest), []).append(name)
    edges = [Edge(s, d, tuple(labels)) for (s, d), labels in pairs.items()]
    edges.sort(key=lambda e: (order[e.source], order[e.dest]))

    # breadth-first depth over every transition but those into terminal states
    adjacency: dict[str, set[str]] = {s: set() for s in states}
    for (_name, dest), srcs in sources.items():
        if dest is None or dest in terminal:
            continue
        for s in srcs:
            adjacency[s].add(dest)
    depth = {str(INITIAL): 0}
    queue = deque([str(INITIAL)])
    while queue:
        s = queue.popleft()
        for nxt in sorted(adjacency[s], key=order.__getitem__):
            if nxt not in depth:
                depth[nxt] = depth[s] + 1
                queue.append(nxt)
    # forward edges: those a breadth-first search follows, then every other edge that closes no
    # cycle (so that, e.g., adjuvant_chemo -> follow_up puts follow_up after adjuvant_chemo)
    forward: dict[str, set[str]] = {s: set() for s in depth}
    candidates = sorted(
        ((s, d) for s in depth for d in adjacency[s] if d in depth),
        key=lambda e: (depth[e[1]] <= depth[e[0]], depth[e[0]], order[e[0]], order[e[1]]),
    )
    for s, d in candidates:
        if s != d and not _reaches(forward, d, s):
            forward[s].add(d)
    layer = {s: 0 for s in depth}
    for _ in range(len(states)):
        changed = False
        for s, targets in forward.items():
            for d in targets:
                if layer[d] < layer[s] + 1:
                    layer[d] = layer[s] + 1
                    changed = True
        if not changed:
            break
    last = max(layer.values(), default=0) + 1
    for s in states:
        if s not in layer:
            layer[s] = last
    layers: list[list[str]] = [[] for _ in range(max(layer.values()) + 1)]
    for s in states:
        layers[layer[s]].append(s)
    layers = [column for column in layers if column]
    return Graph(layers=layers, edges=edges, common=common, loops=loops, common_loops=sorted(common_loops))


def _reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


BOX_W, BOX_H = 178, 40
COL_W, ROW_H = 232, 86
MARGIN_X, MARGIN_TOP = 20, 110


def pathway_diagram(current_state: str | None, machine: Any = MACHINE) -> str:
    """The pathway as an SVG document fragment, `current_state` highlighted."""
    graph = pathway_graph(machine)
    tallest = max(len(column) for column in graph.layers)
    height_body = tallest * ROW_H
    pos: dict[str, tuple[float, float]] = {}
    for c, column in enumerate(graph.layers):
        offset = (height_body - len(column) * ROW_H) / 2
        for r, state in enumerate(column):
            pos[state] = (MARGIN_X + c * COL_W, MARGIN_TOP + offset + r * ROW_H)
    width = MARGIN_X * 2 + (len(graph.layers) - 1) * COL_W + BOX_W
    legend_lines = _legend(graph)
    height = MARGIN_TOP + height_body + 20 + 18 * len(legend_lines)

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="pathway-diagram" viewBox="0 0 {width} {height:.0f}" '
        f'width="{width}" height="{height:.0f}" role="img" aria-labelledby="pd-title">',
        '<title id="pd-title">The care pathway: states and the events that move a patient between them'
        + (f"; current state {_e(current_state)}" if current_state else "")
        + "</title>",
        "<defs>",
        '<marker id="pd-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>',
        '<marker id="pd-arrow-next" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#b45309"/></marker>',
        "</defs>",
    ]
    back = [e for e in graph.edges if graph.layer_of(e.dest) < graph.layer_of(e.source)]
    back.sort(key=lambda e: -pos[e.source][0])
    back_index = {(e.source, e.dest): k for k, e in enumerate(back)}
    edge_svg: list[str] = []
    for i, edge in enumerate(graph.edges):
        edge_svg.append(_edge(edge, graph, pos, i, current_state, back_index))
    out.extend(edge_svg)
    for state, (x, y) in pos.items():
        current = state == current_state
        classes = ["state"]
        if state in {str(s) for s in TERMINAL_STATES}:
            classes.append("terminal")
        if state == str(INITIAL):
            classes.append("initial")
        if current:
            classes.append("current")
        fill = "#fde68a" if current else ("#e5e7eb" if "terminal" in classes else "#eff6ff")
        stroke = "#b45309" if current else "#1e3a8a"
        out.append(
            f'<g class="{" ".join(classes)}" data-state="{_e(state)}"'
            + (' aria-current="step"' if current else "")
            + f'><title>{_e(state)}{" (current)" if current else ""}</title>'
            f'<rect x="{x}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{3 if current else 1.2}"/>'
            f'<text x="{x + BOX_W / 2:.0f}" y="{y + BOX_H / 2 + 5:.0f}" text-anchor="middle" '
            f'font-size="13" font-weight="{"bold" if current else "normal"}" fill="#111">{_e(state)}</text>'
        )
        loops = graph.loops.get(state)
        if loops:
            out.append(
                f'<text class="loops" x="{x + BOX_W / 2:.0f}" y="{y + BOX_H + 13:.0f}" text-anchor="middle" '
                f'font-size="10" fill="#555">&#8635; {_e(", ".join(loops))}</text>'
            )
        out.append("</g>")
    y = MARGIN_TOP + height_body + 24
    for line in legend_lines:
        out.append(f'<text class="legend" x="{MARGIN_X}" y="{y:.0f}" font-size="11" fill="#333">{_e(line)}</text>')
        y += 18
    out.append("</svg>")
    return "\n".join(out)


def _legend(graph: Graph) -> list[str]:
    lines = []
    for name, dest, srcs in graph.common:
        extra = sorted(set(srcs) - {str(s) for s in NON_TERMINAL_STATES})
        also = f" (also from {', '.join(extra)})" if extra else ""
        lines.append(f"From any non-terminal state{also}: {name} \u2192 {dest}")
    if graph.common_loops:
        lines.append(f"In any non-terminal state, without changing it: {', '.join(graph.common_loops)}")
    lines.append("\u21bb events that keep the state; dashed arrows go back to an earlier stage")
    return lines


def _edge(
    edge: Edge, graph: Graph, pos: dict[str, tuple[float, float]], i: int, current: str | None,
    back_index: dict[tuple[str, str], int],
) -> str:
    sx, sy = pos[edge.source]
    dx, dy = pos[edge.dest]
    ls, ld = graph.layer_of(edge.source), graph.layer_of(edge.dest)
    label = ", ".join(edge.labels)
    nxt = edge.source == current
    classes = ["edge"]
    if nxt:
        classes.append("next")
    if ld > ls:
        x1, y1 = sx + BOX_W, sy + BOX_H / 2
        x2, y2 = dx, dy + BOX_H / 2
        cx = (x1 + x2) / 2
        path = f"M{x1:.0f},{y1:.0f} C{cx:.0f},{y1:.0f} {cx:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        lx, ly = x2 - 8, y2 - 5
        dash = ""
    elif ld == ls:
        # same layer: an arc to the right of the column
        x1, y1 = sx + BOX_W, sy + BOX_H / 2 + (6 if sy < dy else -6)
        x2, y2 = dx + BOX_W, dy + BOX_H / 2 + (-6 if sy < dy else 6)
        bulge = 40 + 12 * (i % 3)
        path = f"M{x1:.0f},{y1:.0f} C{x1 + bulge:.0f},{y1:.0f} {x2 + bulge:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        lx, ly = max(x1, x2) + bulge * 0.75 + 2, (y1 + y2) / 2
        dash = ' stroke-dasharray="2 3"'
        classes.append("lateral")
    else:
        # back to an earlier layer: out of the source's left side into the gap between columns,
        # up to a channel above the diagram, across, and down into the destination's top
        k = back_index.get((edge.source, edge.dest), 0)
        x1, y1 = sx, sy + BOX_H / 2 + 8
        gap = sx - 10 - 3 * (k % 4)
        chan = MARGIN_TOP - 14 - 7 * k
        x2, y2 = dx + 14 + 9 * k, dy
        path = f"M{x1:.0f},{y1:.0f} H{gap:.0f} V{chan:.0f} H{x2:.0f} V{y2:.0f}"
        lx, ly = gap - 4, chan - 2
        dash = ' stroke-dasharray="5 4"'
        classes.append("back")
    stroke = "#b45309" if nxt else ("#555" if "back" not in classes else "#888")
    marker = "pd-arrow-next" if nxt else "pd-arrow"
    anchor = "start" if "lateral" in classes else "end"
    return (
        f'<g class="{" ".join(classes)}" data-from="{_e(edge.source)}" data-to="{_e(edge.dest)}">'
        f"<title>{_e(edge.source)} \u2192 {_e(edge.dest)}: {_e(label)}</title>"
        f'<path d="{path}" fill="none" stroke="{stroke}" stroke-width="{2 if nxt else 1.1}"{dash} '
        f'marker-end="url(#{marker})"/>'
        f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="{anchor}" font-size="10" '
        f'fill="{"#92400e" if nxt else "#374151"}">{_e(label)}</text></g>'
    )


# -- the timeline ----------------------------------------------------------------------------------

#: Lanes of the timeline, and which event types and reminder kinds go in each.
LANES: list[tuple[str, str, frozenset[str], frozenset[str]]] = [
    (
        "mdt",
        "Referral & MDT",
        frozenset({"referral", "mdt_scheduled", "mdt_decision", "biomarker", "booked", "recurrence",
                   "discharged", "died", "withdrawn", "void"}),
        frozenset({"mdt_due", "mdt_meeting"}),
    ),
    ("chemo", "Chemotherapy", frozenset({"cycle_given", "cycle_delayed", "chemo_stopped"}), frozenset({"chemo_cycle"})),
    (
        "procedure",
        "Surgery / ablation / PVE",
        frozenset({"surgery", "ablation_performed", "pve_performed"}),
        frozenset({"surgery_due", "pve_due", "ablation_due"}),
    ),
    (
        "scan",
        "Scans",
        frozenset({"restaging", "ablation_checked"}),
        frozenset({"restaging_scan", "flr_scan", "ablation_scan", "imaging_followup"}),
    ),
    ("surveillance", "Surveillance", frozenset({"surveillance_visit"}), frozenset({"surveillance"})),
]

LANE_H = 44
LABEL_W = 170
PLOT_W = 820
TOP = 28


def _lane_of_type(type_: str | None) -> int:
    for i, (_, _, types, _) in enumerate(LANES):
        if type_ in types:
            return i
    return 0


def _lane_of_kind(kind: str) -> int:
    for i, (_, _, _, kinds) in enumerate(LANES):
        if kind in kinds:
            return i
    return 0


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
    for i, (key, label, _, _) in enumerate(LANES):
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

