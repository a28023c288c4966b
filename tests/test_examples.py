"""The worked examples of spec/examples (the vignettes of clinical/vignettes.md), line by line.

For every line: the status, every expected rule code, the state afterwards and the exact set of
pending reminders; and after every line, replaying the patient's history gives the stored snapshot
and reminders exactly.
"""

from __future__ import annotations

import pytest

from pathway import Engine
from tests.conftest import example_names, load_example, pending_by_kind


@pytest.mark.parametrize("name", example_names())
def test_example_matches_the_expected_result_of_every_line(name: str, any_engine: Engine) -> None:
    events, expected = load_example(name)
    assert len(events) == len(expected)
    for event, want in zip(events, expected, strict=True):
        result = any_engine.record(event)
        where = f"{name} line {want['line']} ({want['type']})"
        assert result.status == want["status"], f"{where}: {result.as_dict()}"
        codes = {r.code for r in result.reasons}
        assert set(want["codes"]) <= codes, f"{where}: codes {sorted(codes)}"
        view = any_engine.show(want["patient"])
        assert view.state == want["state"], where
        assert pending_by_kind(any_engine, want["patient"]) == want["pending"], where
        assert any_engine.verify(want["patient"]) == [], where
