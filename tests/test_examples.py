"""The worked examples of spec/examples (the vignettes of clinical/vignettes.md), line by line.

For every line: the status, every expected rule code, the state afterwards and the exact set of
pending reminders; and after every line, replaying the patient's history gives the stored snapshot
and reminders exactly. They run on the in-memory twin (the `engine` fixture); the repository
contract suite records them all on SQLite and PostgreSQL too, and compares those with the twin.
"""

from __future__ import annotations

import pytest

from pathway import Engine
from tests.conftest import EXAMPLES, SPEC_EXAMPLES, example_names, load_example, pending_by_kind


def test_every_worked_example_of_the_v1_1_spec_is_here_and_identical() -> None:
    """The v1.1 examples in tests/examples are the shared spec's (when the shared folder is beside
    the project), beside the project's own (v1.2); and there are examples at all: an empty list
    would silently run no example test."""
    assert len(example_names()) >= 12
    if SPEC_EXAMPLES.is_dir():
        spec = {p.name: p.read_bytes() for p in SPEC_EXAMPLES.glob("*.jsonl")}
        ours = {p.name: p.read_bytes() for p in EXAMPLES.glob("*.jsonl") if p.name in spec}
        assert ours == spec, "tests/examples differs from ../shared/spec/examples: copy the spec's files"


@pytest.mark.parametrize("name", example_names())
def test_example_matches_the_expected_result_of_every_line(name: str, engine: Engine) -> None:
    events, expected = load_example(name)
    assert len(events) == len(expected)
    for event, want in zip(events, expected, strict=True):
        result = engine.record(event)
        where = f"{name} line {want['line']} ({want['type']})"
        assert result.status == want["status"], f"{where}: {result.as_dict()}"
        codes = {r.code for r in result.reasons}
        assert set(want["codes"]) <= codes, f"{where}: codes {sorted(codes)}"
        view = engine.show(want["patient"])
        assert view.state == want["state"], where
        assert pending_by_kind(engine, want["patient"]) == want["pending"], where
        assert engine.verify(want["patient"]) == [], where
