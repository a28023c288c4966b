"""The pathway diagram as SVG, drawn from the pathway definition's transitions (states.definition),
in a layered layout computed from them, with the patient's current state highlighted. No
JavaScript, no inline styles (the CSP forbids both): colours are presentation attributes so that
the picture reads even without CSS; classes let pages.css refine it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from html import escape
from typing import Any

from states.definition import DEFINITION, Definition
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


def pathway_graph(definition: Definition = DEFINITION) -> Graph:
    """Read the definition's states and transitions and lay them out in layers.

    Layer = longest path from the initial state over *forward* edges, where an edge is forward when
    a breadth-first search from the initial state reaches its destination later than its source;
    terminal states form the last layer."""
    order = {str(s): i for i, s in enumerate(State)}
    states = [str(s) for s in State]
    non_terminal = {str(s) for s in NON_TERMINAL_STATES}
    terminal = {str(s) for s in TERMINAL_STATES}

    sources: dict[tuple[str, str | None], set[str]] = {}
    for edge in definition.edges():  # the graph as the definition derives it (the machine and the API too)
        stays = edge.dest is edge.source
        sources.setdefault((str(edge.event), None if stays else str(edge.dest)), set()).add(str(edge.source))

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
            if shared and (s != str(definition.initial) or dest in terminal):
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
    depth = {str(definition.initial): 0}
    queue = deque([str(definition.initial)])
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


def pathway_diagram(current_state: str | None, definition: Definition = DEFINITION) -> str:
    """The pathway as an SVG document fragment, `current_state` highlighted."""
    graph = pathway_graph(definition)
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
        if state == str(definition.initial):
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
