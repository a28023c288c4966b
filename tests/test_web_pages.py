"""The coordinator pages through the test client: worklist, patient page, recording by form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pathway import Engine, ManualClock
from pathway.web import create_app
from pathway.web.diagram import pathway_diagram, pathway_graph
from pathway.web.forms import ALL_TYPES, form_fields, parse_form, parse_overrides
from pathway.web.timeline import timeline
from states.vocabulary import State
from tests.conftest import csrf_of

PASSWORD = "correct horse battery staple"
TODAY = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
QUORUM = ["liver_surgeon", "radiologist", "oncologist"]


def p1_events() -> list[dict[str, Any]]:
    return [
        {"patient": "P1", "type": "referral", "on": "2026-01-05", "data": {"primary": "colorectal"}},
        {"patient": "P1", "type": "mdt_scheduled", "on": "2026-01-06", "data": {"meeting_on": "2026-01-12"}},
        {"patient": "P1", "type": "mdt_decision", "on": "2026-01-12", "data": {
            "attendees": QUORUM, "plan": "perioperative_chemotherapy", "resectability": "resectable",
            "complete_resection_feasible": True, "operative_risk": "low", "flr_percent": 40}},
        {"patient": "P1", "type": "cycle_given", "on": "2026-01-19", "data": {"cycle": 1}},
    ]


@dataclass
class Site:
    engine: Engine
    client: TestClient

    def login(self, name: str) -> None:
        self.client.cookies.clear()
        page = self.client.get("/login")
        response = self.client.post("/login", data={"name": name, "password": PASSWORD, "csrf": csrf_of(page.text)},
                                    follow_redirects=False)
        assert response.status_code == 303, response.text

    def record_form(self, patient: str, fields: dict[str, Any], *, with_csrf: bool = True) -> Any:
        page = self.client.get(f"/patients/{patient}")
        data = dict(fields)
        if with_csrf:
            data["csrf"] = csrf_of(page.text)
        return self.client.post(f"/patients/{patient}/events", data=data, follow_redirects=False)


@pytest.fixture
def site(sqlite_url: str) -> Iterator[Site]:
    with Engine.open(sqlite_url, clock=ManualClock(TODAY)) as engine:
        for event in p1_events():
            assert engine.record(event, by="setup").ok
        engine.record({"patient": "P2", "type": "referral", "on": "2026-01-20", "data": {"primary": "breast"}})
        app = create_app(engine)
        for name, role in (("coord", "coordinator"), ("view", "viewer")):
            app.state.accounts.add_user(name, role, PASSWORD)
        with TestClient(app) as client:
            s = Site(engine, client)
            s.login("coord")
            yield s


# -- pure parts --------------------------------------------------------------------------------------


def test_every_event_type_has_a_form_derived_from_its_model() -> None:
    kinds = {t: {f.name: f.kind for f in form_fields(t)} for t in ALL_TYPES}
    assert set(kinds) == {
        "referral", "mdt_scheduled", "mdt_decision", "cycle_given", "cycle_delayed", "chemo_stopped", "biomarker",
        "booked", "restaging", "pve_performed", "surgery", "ablation_performed", "ablation_checked",
        "surveillance_visit", "recurrence", "discharged", "died", "withdrawn", "void"}
    assert kinds["mdt_scheduled"] == {"meeting_on": "date"}
    assert kinds["booked"] == {"what": "select", "for": "date"}
    assert kinds["recurrence"] == {"sites": "checkboxes"}
    assert kinds["mdt_decision"]["attendees"] == "checkboxes"
    assert kinds["mdt_decision"]["complete_resection_feasible"] == "bool"
    assert kinds["mdt_decision"]["flr_percent"] == "number"
    assert kinds["cycle_given"]["cycle"] == "int"
    assert kinds["died"] == {}


def test_parse_form_converts_and_leaves_blanks_out() -> None:
    form = {"data.attendees": ["liver_surgeon", "radiologist"], "data.attendees.other": "nurse, pharmacist",
            "data.plan": "resection", "data.complete_resection_feasible": "true", "data.flr_percent": "35.5",
            "data.lesion_count": "3", "data.regimen": ""}
    parsed = parse_form("mdt_decision", form)
    assert parsed.errors == {}
    assert parsed.data == {"attendees": ["liver_surgeon", "radiologist", "nurse", "pharmacist"], "plan": "resection",
                           "complete_resection_feasible": True, "flr_percent": 35.5, "lesion_count": 3}
    assert parse_form("cycle_given", {"data.cycle": "two"}).errors == {"cycle": "must be a whole number, got 'two'"}
    assert parse_overrides({"override": ["CYCLE_TOO_EARLY"], "override_reason.CYCLE_TOO_EARLY": " clinic "}) == (
        [{"rule": "CYCLE_TOO_EARLY", "reason": "clinic"}], {})
    assert parse_overrides({"override": ["CYCLE_TOO_EARLY"]})[1] == {
        "override.CYCLE_TOO_EARLY": "give the reason for overriding CYCLE_TOO_EARLY"}


def test_pathway_diagram_is_generated_from_the_definition_with_the_current_state_highlighted() -> None:
    graph = pathway_graph()
    drawn = {s for layer in graph.layers for s in layer}
    assert drawn == {str(s) for s in State}
    assert graph.layers[0] == ["referral"] and graph.layers[1] == ["mdt_assessment"]
    assert graph.layer_of("adjuvant_chemo") < graph.layer_of("follow_up") < graph.layer_of("discharged")
    labels = {(e.source, e.dest): e.labels for e in graph.edges}
    assert "surgery" in labels[("resection", "adjuvant_chemo")]
    assert "mdt_decision" in labels[("mdt_assessment", "neoadjuvant_chemo")]
    svg = pathway_diagram("resection")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count('class="state current"') == 1
    assert re.search(r'<g class="state current" data-state="resection"', svg)
    assert "style=" not in svg
    assert 'class="state current"' not in pathway_diagram(None)


def test_timeline_shows_actual_planned_delays_and_refusals_escaped() -> None:
    history = [
        {"type": "cycle_given", "on": "2026-01-19", "status": "accepted", "data": {"cycle": 1}},
        {"type": "cycle_delayed", "on": "2026-01-30", "status": "accepted", "data": {"days": 7, "reason": "<b>"}},
        {"type": "cycle_given", "on": "2026-01-26", "status": "refused", "data": {"cycle": 2},
         "reasons": [{"code": "CYCLE_TOO_EARLY", "severity": "confirm"}]},
        {"type": "surgery", "on": "2026-03-01", "status": "accepted", "data": {"procedure": "resection"}},
        {"type": "restaging", "on": "2026-02-20", "status": "accepted", "data": {"response": "partial"}},
        {"type": "surveillance_visit", "on": "2026-06-01", "status": "accepted", "data": {"finding": "clear"}},
    ]
    reminders = [{"kind": "chemo_cycle", "due_on": "2026-02-16", "status": "pending", "detail": "cycle 2 & more"},
                 {"kind": "surveillance", "due_on": "2026-09-01", "status": "pending"}]
    svg = timeline(history, reminders, datetime(2026, 2, 2).date())
    assert 'data-type="cycle_given" data-date="2026-01-19" data-status="accepted"' in svg
    assert 'data-status="refused"' in svg and "CYCLE_TOO_EARLY" in svg
    assert 'class="planned kind-chemo_cycle"' in svg and 'class="planned kind-surveillance"' in svg
    assert "type-cycle_delayed" in svg and "type-surgery" in svg and "type-restaging" in svg
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&amp; more" in svg
    assert "style=" not in svg
    assert "No events yet" in timeline([], [], None)


# -- pages -------------------------------------------------------------------------------------------


def test_pages_need_a_login(site: Site) -> None:
    site.client.cookies.clear()
    for path in ("/", "/patients/P1"):
        response = site.client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_worklist_has_sections_rag_counts_and_filters(site: Site) -> None:
    html = site.client.get("/").text
    for section in ("section-overdue", "section-today", "section-week"):
        assert section in html
    # P1's cycle 2 is due today (cycle 1 + 14); P2's MDT is due 2026-02-03 (referral + 14)
    today = html.split('id="section-today"')[1].split("</section>")[0]
    assert 'data-patient="P1" data-kind="chemo_cycle"' in today and "rag-amber" in today
    week = html.split('id="section-week"')[1].split("</section>")[0]
    assert 'data-patient="P2" data-kind="mdt_due"' in week
    assert re.search(r'data-state="neoadjuvant_chemo">\s*<a href="/\?state=neoadjuvant_chemo">neoadjuvant_chemo '
                     r'<span class="n">1</span>', html)
    only_p2 = site.client.get("/", params={"patient": "p2"}).text
    assert 'data-patient="P2"' in only_p2 and 'data-patient="P1"' not in only_p2
    by_kind = site.client.get("/", params={"kind": "chemo_cycle"}).text
    assert 'data-patient="P1"' in by_kind and 'data-patient="P2"' not in by_kind
    by_state = site.client.get("/", params={"state": "referral"}).text
    assert 'data-patient="P2"' in by_state and 'data-patient="P1"' not in by_state
    assert site.client.get("/", params={"state": "nonsense"}).status_code == 200


def test_overdue_is_red_and_failed_deliveries_are_flagged(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.engine.clock.advance(days=3)  # type: ignore[attr-defined]
    site.login("coord")  # the session of 3 days ago has expired
    html = site.client.get("/").text
    overdue = html.split('id="section-overdue"')[1].split("</section>")[0]
    assert 'data-patient="P1" data-kind="chemo_cycle"' in overdue and "rag-red" in overdue
    assert "delivery-failed" not in html

    def unreachable(delivery: Any) -> None:
        raise ConnectionError("relay down")

    for _ in range(site.engine.policy.delivery_max_attempts):  # a real delivery that gives up
        site.engine.clock.advance(hours=2)  # type: ignore[attr-defined]  # past each retry's backoff
        site.engine.dispatch_due(notifiers=[unreachable])
    assert "P1" in {r.patient for r in site.engine.deliveries(delivery="failed")}
    site.login("coord")
    html = site.client.get("/").text
    assert re.search(r'<tr class="rag-red failed" data-patient="P1"', html)
    assert "&#9888; failed" in html and "failed deliver" in html


def test_patient_page_shows_state_reminders_history_svgs_and_refusals_with_sources(site: Site) -> None:
    site.engine.record({"patient": "P1", "type": "cycle_given", "on": "2026-01-26", "data": {"cycle": 2}}, by="x")
    html = site.client.get("/patients/P1").text
    assert 'data-state="neoadjuvant_chemo"' in html
    assert "chemo_cycle" in html  # pending reminder
    assert 'data-status="refused"' in html and "CYCLE_TOO_EARLY" in html and "Source:" in html
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="timeline"' in html
    assert '<g class="state current" data-state="neoadjuvant_chemo"' in html
    assert 'id="form-cycle_given"' in html and 'id="form-void"' in html
    for event_type in ALL_TYPES:
        if event_type != "referral":
            assert f'id="form-{event_type}"' in html
    assert 'name="by"' not in html


def test_unknown_patient_is_a_404_page(site: Site) -> None:
    response = site.client.get("/patients/NOPE")
    assert response.status_code == 404 and "NOPE" in response.text
    assert site.client.get("/patients/..%2F..").status_code == 404


def test_recording_a_cycle_refused_then_overridden(site: Site) -> None:
    fields = {"type": "cycle_given", "on": "2026-01-26", "data.cycle": "2", "key": "k-1"}
    refused = site.record_form("P1", fields)
    assert refused.status_code == 409
    result = refused.text.split('class="result status-refused"')[1].split("</div>")[0]
    assert "CYCLE_TOO_EARLY" in result and "Source:" in result
    assert 'name="override" value="CYCLE_TOO_EARLY"' in refused.text
    assert 'value="k-1"' in refused.text  # the same key is resent

    no_reason = site.record_form("P1", {**fields, "override": "CYCLE_TOO_EARLY"})
    assert no_reason.status_code == 422
    assert "give the reason for overriding CYCLE_TOO_EARLY" in no_reason.text
    assert site.engine.show("P1").history[-1].type == "cycle_given"
    assert len([h for h in site.engine.show("P1").history if h.status == "accepted"]) == 4

    accepted = site.record_form("P1", {**fields, "override": "CYCLE_TOO_EARLY",
                                       "override_reason.CYCLE_TOO_EARLY": "clinic closed next week"})
    assert accepted.status_code == 303 and accepted.headers["location"].startswith("/patients/P1?recorded=cycle_given")
    last = site.engine.show("P1").history[-1]
    assert last.status == "accepted" and last.by == "coord"
    assert last.override == ({"rule": "CYCLE_TOO_EARLY", "reason": "clinic closed next week"},)
    page = site.client.get(accepted.headers["location"]).text
    assert "Recorded: cycle_given" in page and "clinic closed next week" in page
    assert 'data-type="cycle_given" data-date="2026-01-26" data-status="accepted"' in page


def test_recording_an_accepted_event_and_an_invalid_one(site: Site) -> None:
    ok = site.record_form("P1", {"type": "biomarker", "on": "2026-01-30", "data.ras": "wild_type"})
    assert ok.status_code == 303
    bad = site.record_form("P1", {"type": "biomarker", "on": "2026-01-30"})
    assert bad.status_code == 422 and "give at least one of ras" in bad.text
    future = site.record_form("P1", {"type": "biomarker", "on": "2027-01-01", "data.ras": "mutant"})
    assert future.status_code == 422 and 'class="field-error"' in future.text


def test_a_referral_from_the_worklist(site: Site) -> None:
    page = site.client.get("/")
    response = site.client.post("/events", data={"csrf": csrf_of(page.text), "type": "referral", "patient": "P9",
                                                 "on": "2026-02-01", "data.primary": "colorectal",
                                                 "data.prior_chemo": "true"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/patients/P9")
    assert site.engine.show("P9").state == "referral"
    assert "CHEMO_BEFORE_SURGICAL_REVIEW" in site.client.get("/patients/P9").text
    again = site.client.post("/events", data={"csrf": csrf_of(page.text), "patient": "bad id!", "on": "2026-02-01",
                                              "data.primary": "colorectal"}, follow_redirects=False)
    assert again.status_code == 422 and "starting with a letter or digit" in again.text


def test_viewers_see_no_forms_and_cannot_record(site: Site) -> None:
    site.login("view")
    html = site.client.get("/patients/P1").text
    assert "<form method=\"post\" action=\"/patients/P1/events\"" not in html and 'id="form-' not in html
    assert 'id="form-referral"' not in site.client.get("/").text
    response = site.record_form("P1", {"type": "biomarker", "on": "2026-01-30", "data.ras": "wild_type"})
    assert response.status_code == 403
    response = site.client.post("/events", data={"csrf": csrf_of(html), "patient": "P7", "on": "2026-01-30",
                                                 "data.primary": "other"}, follow_redirects=False)
    assert response.status_code == 403
    assert len(site.engine.show("P1").history) == 4


def test_csrf_is_enforced_on_the_forms(site: Site) -> None:
    response = site.record_form("P1", {"type": "biomarker", "on": "2026-01-30", "data.ras": "wild_type"},
                                with_csrf=False)
    assert response.status_code == 403
    response = site.client.post("/patients/P1/events", data={"csrf": "forged", "type": "biomarker",
                                                             "on": "2026-01-30", "data.ras": "wild_type"})
    assert response.status_code == 403
    assert site.client.post("/events", data={"patient": "P8", "on": "2026-01-30",
                                             "data.primary": "other"}).status_code == 403
    assert len(site.engine.show("P1").history) == 4


def test_by_cannot_be_set_by_the_form(site: Site) -> None:
    assert site.record_form("P1", {"type": "biomarker", "on": "2026-01-30", "data.ras": "wild_type",
                                   "by": "someone.else"}).status_code == 303
    assert site.engine.show("P1").history[-1].by == "coord"


def test_pages_carry_no_inline_script_or_style(site: Site) -> None:
    site.engine.record({"patient": "P1", "type": "cycle_given", "on": "2026-01-26", "data": {"cycle": 2}}, by="x")
    for path in ("/", "/patients/P1"):
        html = site.client.get(path).text
        assert "style=" not in html
        assert not re.search(r"<script(?![^>]*\bsrc=)", html)
        assert not re.search(r"\son[a-z]+=", html)
