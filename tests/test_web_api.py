"""The HTTP API (/api/v1): every endpoint, its errors, and a schemathesis run over its OpenAPI schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pathway import Engine
from pathway.web import create_app
from persistence.accounts import Accounts
from tests.conftest import WEB_PASSWORD

PASSWORD = WEB_PASSWORD



@dataclass
class Web:
    client: TestClient
    engine: Engine
    accounts: Accounts
    tokens: dict[str, str]

    def auth(self, role: str = "coordinator") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def post(self, body: Any, role: str = "coordinator") -> Any:
        return self.client.post("/api/v1/events", json=body, headers=self.auth(role))

    def get(self, path: str, role: str = "viewer", **params: Any) -> Any:
        return self.client.get(f"/api/v1{path}", params=params, headers=self.auth(role))


@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    """The web app keeps its accounts in the database: SQLite (or `any_engine`), never the twin."""
    return sqlite_engine


def make_web(engine: Engine) -> Web:
    app = create_app(engine, scheduler=False)
    accounts: Accounts = app.state.accounts
    tokens = {}
    for role in ("viewer", "coordinator", "admin"):
        accounts.add_user(f"{role}.user", role, PASSWORD)
        tokens[role] = accounts.create_token(f"{role}.user", "tests")[1]
    return Web(TestClient(app), engine, accounts, tokens)


@pytest.fixture
def web(any_engine: Engine) -> Iterator[Web]:
    w = make_web(any_engine)
    with w.client:
        yield w


@pytest.fixture
def sqlite_web(engine: Engine) -> Iterator[Web]:
    w = make_web(engine)
    with w.client:
        yield w


def day(offset: int, web: Web) -> str:
    return (web.engine.today() + timedelta(days=offset)).isoformat()


def referral(web: Web, patient: str = "P1", offset: int = -30, **extra: Any) -> dict[str, Any]:
    return {"patient": patient, "type": "referral", "on": day(offset, web), "data": {"primary": "colorectal"}, **extra}


def errors(response: Any) -> list[tuple[Any, ...]]:
    assert response.status_code == 422, response.text
    return [tuple(e["loc"]) for e in response.json()["detail"]]


# -- POST /events -------------------------------------------------------------------------------------


def test_one_event_is_recorded_with_the_authenticated_user_as_by(web: Web) -> None:
    response = web.post(referral(web))
    assert response.status_code == 200
    assert response.json() == [{"index": 0, "line": 1, "patient": "P1", "type": "referral", "status": "accepted",
                                "state": "referral", "reasons": [], "error": None}]
    history = web.engine.show("P1").history
    assert [h.by for h in history] == ["coordinator.user"]


def test_a_list_of_events_gives_one_result_each_with_mixed_statuses(web: Web) -> None:
    events = [
        referral(web, key="r1"),
        referral(web, key="r1"),  # same key, same content: duplicate
        {"patient": "P1", "type": "cycle_given", "on": day(-29, web), "data": {}},  # not allowed in referral
        {"patient": "P2", "type": "mdt_scheduled", "on": day(-29, web), "data": {"meeting_on": day(-20, web)}},
        {"patient": "P1", "type": "mdt_scheduled", "on": day(-28, web), "data": {"meeting_on": day(-21, web),
                                                                               "colour": "red"}},
        {"patient": "P1", "type": "mdt_scheduled", "on": day(-28, web), "data": {"meeting_on": day(-21, web)}},
    ]
    response = web.post(events)
    assert response.status_code == 200
    body = response.json()
    assert [r["index"] for r in body] == list(range(6))
    assert [r["line"] for r in body] == list(range(1, 7))
    assert [r["status"] for r in body] == ["accepted", "duplicate", "refused", "invalid", "invalid", "accepted"]
    assert body[2]["reasons"][0]["code"] == "NOT_ALLOWED_IN_STATE"
    assert set(body[2]["reasons"][0]) == {"code", "severity", "message", "source"}
    assert "P2" in body[3]["error"] or "unknown" in body[3]["error"].lower()
    assert "colour" in body[4]["error"]
    assert body[5]["state"] == "mdt_assessment"
    assert web.engine.show("P1").state == "mdt_assessment"


def test_results_match_record_json_objects(web: Web) -> None:
    result = web.engine.record(referral(web, "P9"), by="x")
    response = web.post(referral(web, "P9"))  # a second referral: invalid
    expected = {"index": 0, "line": 1, **web.engine.record(referral(web, "P9")).as_dict()}
    assert result.ok and response.json() == [expected]


def test_by_is_set_by_the_server_and_refused_in_the_body(web: Web) -> None:
    response = web.post(referral(web, by="someone.else"))
    assert errors(response) == [("body", "by")]
    assert "set by the server from your login" in response.json()["detail"][0]["msg"]
    response = web.post([referral(web), referral(web, "P2", by="x")])
    assert errors(response) == [("body", 1, "by")]
    assert web.engine.patients() == []  # nothing recorded from a refused request


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"patient": "P1", "type": "referral", "on": "2026-01-05", "colour": "red"}, ("body", "colour")),
        ({"patient": 5, "type": "referral", "on": "2026-01-05"}, ("body", "patient")),
        ({"patient": "P 1", "type": "referral", "on": "2026-01-05"}, ("body", "patient")),
        ({"patient": "P1", "type": "teleport", "on": "2026-01-05"}, ("body", "type")),
        ({"patient": "P1", "type": "referral", "on": "05/01/2026"}, ("body", "on")),
        ({"patient": "P1", "type": "referral", "on": "2026-02-30"}, ("body", "on")),
        ({"patient": "P1", "type": "referral", "on": "2026-01-05T10:00:00"}, ("body", "on")),
        ({"patient": "P1", "type": "referral"}, ("body", "on")),
        ({"patient": "P1", "type": "referral", "on": "2026-01-05", "data": []}, ("body", "data")),
        ({"patient": "P1", "type": "referral", "on": "2026-01-05", "override": [{"rule": "X"}]},
         ("body", "override", 0, "reason")),
        ({"patient": "P1", "type": "referral", "on": "2026-01-05", "override": [{"rule": "X", "reason": "r", "z": 1}]},
         ("body", "override", 0, "z")),
        ([{"patient": "P1", "type": "referral", "on": "2026-01-05"}, {"patient": "P1", "on": "2026-01-05"}],
         ("body", 1, "type")),
        ("just a string", ("body",)),
        (17, ("body",)),
        (None, ("body",)),
    ],
)
def test_a_malformed_envelope_is_422_naming_the_field(sqlite_web: Web, body: Any, loc: tuple[Any, ...]) -> None:
    response = sqlite_web.post(body)
    assert loc in errors(response)
    assert sqlite_web.engine.patients() == []


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"])
def test_text_the_database_cannot_store_is_422(web: Web, text: str) -> None:
    def post(body: Any) -> Any:  # json.dumps escapes a lone surrogate as \\ud800, as a client would
        return web.client.post("/api/v1/events", content=json.dumps(body).encode(),
                               headers={**web.auth(), "Content-Type": "application/json"})

    assert errors(post(referral(web, note=text))) == [("body", "note")]
    assert errors(post(referral(web, data={"primary": "colorectal", text: 1}))) == [("body", "data", "<key>")]
    assert errors(post(referral(web, data={"primary": "colorectal", "x": [2**64]}))) == [("body", "data", "x", 0)]
    assert web.engine.patients() == []


def test_deeply_nested_data_is_422_naming_the_field(sqlite_web: Web) -> None:
    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = {"a": value}
        return value

    for depth in (40, 255, 400):
        response = sqlite_web.post(referral(sqlite_web, data={"primary": "colorectal", "x": nested(depth)}))
        found = errors(response)
        assert len(found) == 1 and found[0][:3] == ("body", "data", "x"), found
        assert "nested too deeply" in response.json()["detail"][0]["msg"]
    assert sqlite_web.engine.patients() == []
    # moderately nested data is fine
    ok = sqlite_web.post(referral(sqlite_web, data={"primary": "colorectal", "x": nested(20)}))
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("number", [b"1e999", b"-1e999"])
def test_non_finite_numbers_are_422_naming_the_field(sqlite_web: Web, number: bytes) -> None:
    body = json.dumps(referral(sqlite_web, data={"primary": "colorectal", "size": 0})).encode()
    body = body.replace(b'"size": 0', b'"size": ' + number)
    response = sqlite_web.client.post("/api/v1/events", content=body,
                                      headers={**sqlite_web.auth(), "Content-Type": "application/json"})
    assert errors(response) == [("body", "data", "size")]
    assert "finite" in response.json()["detail"][0]["msg"]
    assert sqlite_web.engine.patients() == []


def test_a_body_over_10_mb_is_413(sqlite_web: Web) -> None:
    big = b'{"patient": "P1", "note": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = sqlite_web.client.post("/api/v1/events", content=big,
                                      headers={**sqlite_web.auth(), "Content-Type": "application/json"})
    assert response.status_code == 413 and "too large" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they stream
        for start in range(0, len(big), 1024 * 1024):
            yield big[start:start + 1024 * 1024]

    response = sqlite_web.client.post("/api/v1/events", content=chunks(),
                                      headers={**sqlite_web.auth(), "Content-Type": "application/json"})
    assert response.status_code == 413
    assert sqlite_web.engine.patients() == []


def test_malformed_json_is_422(sqlite_web: Web) -> None:
    response = sqlite_web.client.post("/api/v1/events", content=b'{"patient": ', headers={
        **sqlite_web.auth(), "Content-Type": "application/json"})
    assert errors(response) == [("body",)]
    for content in (b"\xff\xfe", b'{"patient": NaN}', b"[" * 100_000):
        response = sqlite_web.client.post("/api/v1/events", content=content, headers=sqlite_web.auth())
        assert errors(response) == [("body",)]


def test_an_empty_list_records_nothing(sqlite_web: Web) -> None:
    assert sqlite_web.post([]).json() == []


def test_too_many_events_in_one_request_is_422(sqlite_web: Web) -> None:
    assert errors(sqlite_web.post([referral(sqlite_web, f"P{i}") for i in range(1001)])) == [("body",)]


def test_a_future_date_is_an_invalid_result_not_a_422(sqlite_web: Web) -> None:
    body = sqlite_web.post(referral(sqlite_web, offset=+5)).json()
    assert body[0]["status"] == "invalid" and "future" in body[0]["error"]


def test_overrides_are_passed_to_the_engine(sqlite_web: Web) -> None:
    body = sqlite_web.post(referral(sqlite_web, override=[{"rule": "NO_SUCH_RULE", "reason": "because"}])).json()
    assert body[0]["status"] == "invalid" and "NO_SUCH_RULE" in body[0]["error"]


# -- GET /patients, /patients/{id} ---------------------------------------------------------------------


def test_patients_lists_ids_and_states_and_filters_by_state(web: Web) -> None:
    web.engine.record(referral(web, "P1"))
    web.engine.record(referral(web, "P2"))
    web.engine.record({"patient": "P2", "type": "mdt_scheduled", "on": day(-20, web),
                       "data": {"meeting_on": day(-10, web)}})
    assert sorted(map(tuple, (r.values() for r in web.get("/patients").json()))) == [
        ("P1", "referral"), ("P2", "mdt_assessment")]
    assert web.get("/patients", state="mdt_assessment").json() == [{"patient": "P2", "state": "mdt_assessment"}]
    assert web.get("/patients", state="deceased").json() == []


def test_patients_with_an_unknown_state_is_422_naming_state(sqlite_web: Web) -> None:
    assert errors(sqlite_web.get("/patients", state="asleep")) == [("query", "state")]


def test_patient_is_the_show_json_object(web: Web) -> None:
    web.post(referral(web, "P1"))
    response = web.get("/patients/P1")
    assert response.status_code == 200
    assert response.json() == web.engine.show("P1").as_dict()
    assert response.json()["history"][0]["by"] == "coordinator.user"


@pytest.mark.parametrize("patient", ["P404", "bad id!", "x" * 300, "%00"])
def test_an_unknown_patient_is_404(sqlite_web: Web, patient: str) -> None:
    response = sqlite_web.get(f"/patients/{patient}")
    assert response.status_code == 404 and "detail" in response.json()


# -- GET /worklist ---------------------------------------------------------------------------------------


def test_worklist_lists_due_reminders_like_the_cli(web: Web) -> None:
    web.engine.record(referral(web, "P1", offset=-30))  # mdt_due at referral + 14: overdue
    today = web.engine.today()
    body = web.get("/worklist").json()
    assert body["today"] == today.isoformat() and body["days"] == 7
    assert [(r["patient"], r["kind"], r["overdue"]) for r in body["reminders"]] == [("P1", "mdt_due", True)]
    assert body["reminders"][0]["days"] == -16
    early = web.get("/worklist", today=(today - timedelta(days=30)).isoformat(), days=3).json()
    assert early["reminders"] == [] and early["days"] == 3
    late = web.get("/worklist", today=(today - timedelta(days=30)).isoformat(), days=3660).json()
    assert len(late["reminders"]) == 1


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"today": "2026-02-30"}, ("query", "today")),
        ({"today": "1/2/2026"}, ("query", "today")),
        ({"today": "1700000000"}, ("query", "today")),
        ({"today": "2026-01-01T00:00"}, ("query", "today")),
        ({"days": "-1"}, ("query", "days")),
        ({"days": "3661"}, ("query", "days")),
        ({"days": "seven"}, ("query", "days")),
        ({"days": "1.5"}, ("query", "days")),
        ({"today": "9999-12-31", "days": "7"}, ("query", "days")),  # past the last date there is
    ],
)
def test_worklist_rejects_bad_parameters_naming_them(sqlite_web: Web, params: dict[str, str],
                                                      loc: tuple[str, ...]) -> None:
    assert errors(sqlite_web.get("/worklist", **params)) == [loc]


# -- GET /pathway ----------------------------------------------------------------------------------------


def test_pathway_definition_has_states_events_rules_with_sources_and_reminder_kinds(sqlite_web: Web) -> None:
    body = sqlite_web.get("/pathway").json()
    names = [s["name"] for s in body["states"]]
    assert body["initial"] == "referral" and "follow_up" in names and "deceased" in names
    assert "cycle_given" in body["event_types"] and "void" in body["event_types"]
    rules = {r["code"]: r for r in body["rules"]}
    assert rules["MDT_QUORUM"]["severity"] == "block" and rules["MDT_QUORUM"]["source"]
    assert all(r["source"] and r["message"] for r in body["rules"])
    assert "surveillance" in body["reminder_kinds"]
    assert {"event": "mdt_scheduled", "source": "referral", "dest": "mdt_assessment",
            "conditional": False} in body["transitions"]
    follow = next(s for s in body["states"] if s["name"] == "follow_up")
    assert "surveillance_visit" in follow["allowed_events"]


def test_openapi_document_describes_the_api(sqlite_web: Web) -> None:
    schema = sqlite_web.client.get("/api/v1/openapi.json", headers=sqlite_web.auth()).json()
    assert set(schema["paths"]) == {"/api/v1/events", "/api/v1/patients", "/api/v1/patients/{patient}",
                                    "/api/v1/worklist", "/api/v1/pathway"}
    assert "by" not in schema["components"]["schemas"]["EventIn"]["properties"]
    assert schema["components"]["schemas"]["EventIn"]["additionalProperties"] is False


def test_api_answers_json_with_security_headers(sqlite_web: Web) -> None:
    response = sqlite_web.get("/patients")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


# -- schemathesis ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(engine: Engine) -> None:
    """Every operation, with generated input (bounded: about 300 requests), authenticated as a
    coordinator: no 5xx, responses conform to the schema (status codes, content type, bodies)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import positive_data_acceptance

    web = make_web(engine)
    engine.record({"patient": "P1", "type": "referral", "on": (engine.today() - timedelta(days=20)).isoformat(),
                   "data": {"primary": "colorectal"}})
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", web.client.app, headers=web.auth("coordinator"))
    failures: list[str] = []
    calls = 0
    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            # positive_data_acceptance is off: the schema cannot say that free-form `data` may not
            # hold NUL characters, which the API refuses (422) as PostgreSQL cannot store them
            case.call_and_validate(headers=web.auth("coordinator"), excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - report every operation's failure, not only the first
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:1000]}")
    assert not failures, "\n".join(failures)
    assert calls >= 100


def test_dates_in_worklist_reminders_are_iso(sqlite_web: Web) -> None:
    sqlite_web.engine.record(referral(sqlite_web, "P1", offset=-30))
    for item in sqlite_web.get("/worklist", days=60).json()["reminders"]:
        date.fromisoformat(item["due_on"])


def test_the_api_envelope_has_the_domain_s_limits(sqlite_web: Web) -> None:
    """One contract: a note the engine would refuse is refused by the API's own check (422 naming
    the field), and one at the limit is recorded."""
    from states.events import NOTE_MAX

    too_long = sqlite_web.post(referral(sqlite_web, note="x" * (NOTE_MAX + 1)))
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["body", "note"]
    at_limit = sqlite_web.post(referral(sqlite_web, note="x" * NOTE_MAX))
    assert at_limit.status_code == 200 and at_limit.json()[0]["status"] == "accepted"
