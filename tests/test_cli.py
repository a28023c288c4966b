"""The command line contract (spec section 7): record / show / worklist, exit codes, configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pathway.cli import main
from tests.conftest import EXAMPLES

NOW = "2033-01-01T09:00:00+00:00"
V1 = EXAMPLES / "V1.events.jsonl"
V10 = EXAMPLES / "V10.events.jsonl"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run the CLI in-process against a fresh SQLite file with the clock pinned."""
    monkeypatch.setenv("PATHWAY_DB", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("PATHWAY_NOW", NOW)
    monkeypatch.delenv("PATHWAY_POLICY", raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # noqa: A002
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_record_json_prints_one_result_per_line_with_the_contract_fields(run) -> None:
    result = run("record", str(V1), "--json")
    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert [o["line"] for o in out] == list(range(1, 14))
    assert set(out[0]) >= {"line", "patient", "type", "status", "state", "reasons", "error"}
    assert out[2] == {"line": 3, "patient": "V1", "type": "mdt_decision", "status": "accepted",
                      "state": "neoadjuvant_chemo", "reasons": [], "error": None}


def test_record_exits_1_when_any_line_is_refused_and_reports_code_message_and_source(run) -> None:
    result = run("record", str(V10), "--json")
    assert result.exit_code == 1
    refused = [o for o in lines(result.stdout) if o["status"] == "refused"]
    assert [o["line"] for o in refused] == [5, 6, 12, 15]
    reason = refused[0]["reasons"][0]
    assert reason["code"] == "CYCLE_OUT_OF_SEQUENCE" and reason["severity"] == "block"
    assert reason["message"] and reason["source"]


def test_record_reads_stdin_and_counts_physical_lines_skipping_blank_ones(run) -> None:
    text = V1.read_text().splitlines()
    result = run("record", "-", "--json", input=f"{text[0]}\n\n{text[1]}\nnot json\n")
    assert result.exit_code == 1
    out = lines(result.stdout)
    assert [(o["line"], o["status"]) for o in out] == [(1, "accepted"), (3, "accepted"), (4, "invalid")]
    assert "not valid JSON" in out[2]["error"]


def test_record_without_json_explains_refusals_and_prints_a_summary(run) -> None:
    result = run("record", str(V10))
    assert result.exit_code == 1
    assert "line 5: V10 cycle_given refused" in result.stdout
    assert "CYCLE_OUT_OF_SEQUENCE (block)" in result.stdout and "source:" in result.stdout
    assert "16 events: 12 accepted, 4 refused" in result.stderr


def test_a_missing_file_or_argument_is_a_usage_error_with_status_2(run, tmp_path: Path) -> None:
    assert run("record").exit_code == 2
    missing = run("record", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert run("worklist", "--today", "01/02/2026").exit_code == 2
    assert run("worklist", "--days", "-1").exit_code == 2


def test_a_worklist_reaching_past_the_last_date_is_a_usage_error_with_status_2(run) -> None:
    run("record", str(V1))
    result = run("worklist", "--today", "9999-12-31", "--days", "7")
    assert result.exit_code == 2 and "past the last date" in result.output


def test_show_json_has_the_contract_shape_and_lists_pending_reminders(run) -> None:
    run("record", str(V1), "--json")
    result = run("show", "V1", "--json")
    assert result.exit_code == 0
    view = json.loads(result.stdout)
    assert set(view) >= {"patient", "primary", "state", "history", "reminders", "advice"}
    assert (view["patient"], view["primary"], view["state"]) == ("V1", "colorectal", "follow_up")
    assert len(view["history"]) == 13
    assert len(view["reminders"]) == 14
    assert set(view["reminders"][0]) >= {"key", "kind", "due_on", "notify_at", "status"}
    assert view["reminders"][0]["due_on"] == "2027-08-24" and view["reminders"][0]["status"] == "pending"


def test_show_of_an_unknown_patient_exits_1_and_says_what_to_do(run) -> None:
    run("record", str(V1))
    result = run("show", "NOBODY")
    assert result.exit_code == 1
    assert "no patient 'NOBODY'" in result.output and "referral" in result.output


def test_show_without_json_prints_state_reminders_history_and_advice(run) -> None:
    run("record", str(EXAMPLES / "V5.events.jsonl"))
    result = run("show", "V5")
    assert result.exit_code == 0
    assert "state resection" in result.stdout
    assert "surgery_due" in result.stdout and "History" in result.stdout
    assert "DISAPPEARING_METASTASES" in result.stdout


def test_worklist_lists_reminders_due_by_today_plus_days_overdue_first(run) -> None:
    run("record", str(V1))
    run("record", str(EXAMPLES / "V2.events.jsonl"))
    result = run("worklist", "--today", "2027-08-20", "--days", "30", "--json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert (payload["today"], payload["days"]) == ("2027-08-20", 30)
    due = [(r["patient"], r["kind"], r["due_on"], r["days"]) for r in payload["reminders"]]
    assert due[0] == ("V2", "surveillance", "2026-09-03", -351)  # the oldest overdue first
    assert ("V1", "surveillance", "2027-08-24", 4) in due
    assert all(r["due_on"] <= "2027-09-19" for r in payload["reminders"])


def test_worklist_defaults_to_the_pinned_clock_and_seven_days(run) -> None:
    run("record", str(V1))
    result = run("worklist", "--json")
    payload = json.loads(result.stdout)
    assert (payload["today"], payload["days"]) == ("2033-01-01", 7)
    assert len(payload["reminders"]) == 14  # V1's surveillance ends 2032-05-24: all overdue by 2033
    assert all(r["overdue"] for r in payload["reminders"])
    before = run("worklist", "--today", "2027-08-01", "--days", "0", "--json")
    assert json.loads(before.stdout)["reminders"] == []


def test_the_db_option_and_pathway_db_choose_the_database(run, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    run("record", str(V1), "--db", other)
    run("record", str(V10))
    assert run("show", "V1").exit_code == 1  # PATHWAY_DB's database has no V1
    assert run("show", "V1", "--db", other).exit_code == 0


def test_a_future_event_is_invalid_by_the_pinned_clock(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHWAY_NOW", "2026-10-06T09:00:00+00:00")
    result = run("record", str(V1), "--json")
    out = lines(result.stdout)
    assert out[1]["status"] == "accepted"  # mdt_scheduled on 2026-10-06 = today
    assert out[2]["status"] == "invalid" and "in the future" in out[2]["error"]


def test_a_bad_pathway_now_is_a_usage_error(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHWAY_NOW", "tomorrow")
    result = run("worklist")
    assert result.exit_code == 2 and "PATHWAY_NOW" in result.output


def test_a_policy_file_changes_the_plan(run, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("first_cycle_days = 10\n[lead_days]\nchemo = 3\n")
    run("record", "-", "--policy", str(policy),
        input="\n".join(V1.read_text().splitlines()[:3]) + "\n")
    view = json.loads(run("show", "V1", "--json", "--policy", str(policy)).stdout)
    (reminder,) = view["reminders"]
    assert (reminder["kind"], reminder["due_on"]) == ("chemo_cycle", "2026-10-22")
    assert reminder["notify_at"] == "2026-10-19T07:00:00Z"  # 08:00 London (BST) three days before


@pytest.mark.parametrize(("text", "message"), [
    ("first_cycle_days = 'soon'\n", "first_cycle_days must be a whole number"),
    ("cycle_lenght_days = 3\n", "unknown setting 'cycle_lenght_days'"),
    ("[cycle_length_days]\nFOLFOXX = 14\n", "unknown key 'FOLFOXX'"),
    ("clinic_timezone = 'Mars/Olympus'\n", "not an IANA time zone"),
    ("notify_time = '8am'\n", "notify_time must be HH:MM"),
    ("surveillance_months = [6, 3]\n", "increasing"),
    ("this is not toml", "not valid TOML"),
])
def test_a_bad_policy_file_is_a_usage_error_naming_the_setting(run, tmp_path: Path, text: str, message: str) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    result = run("worklist", "--policy", str(policy))
    assert result.exit_code == 2
    assert message in result.output


def test_pathway_policy_names_the_policy_file(run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("bogus = 1\n")
    monkeypatch.setenv("PATHWAY_POLICY", str(policy))
    result = run("worklist")
    assert result.exit_code == 2 and "bogus" in result.output


def test_verify_replays_every_patient_and_exits_0_when_all_agree(run) -> None:
    run("record", str(V10))
    result = run("verify")
    assert result.exit_code == 0 and "1 patient(s) checked, 0 differ" in result.stdout


def test_db_upgrade_reports_the_schema_revision(run, tmp_path: Path) -> None:
    result = run("db", "upgrade", "--db", f"sqlite:///{tmp_path / 'new.db'}")
    from persistence import db

    assert result.exit_code == 0 and f"schema empty -> {db.head_revision()}" in result.stdout


def test_an_unreachable_database_exits_3(run) -> None:
    result = run("worklist", "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 3 and "cannot open the database" in result.output


def test_the_installed_console_script_records_from_stdin(tmp_path: Path) -> None:
    """The real `pathway` entry point, as other programs call it."""
    exe = Path(sys.executable).with_name("pathway")
    env = dict(os.environ, PATHWAY_DB=f"sqlite:///{tmp_path / 'p.db'}", PATHWAY_NOW=NOW)
    proc = subprocess.run([str(exe), "record", "-", "--json"], input=V1.read_text(), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 13


def test_without_pathway_now_the_cli_uses_the_system_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole process under freezegun: `today` is the clinic-local date of the system clock
    (23:30 UTC on 30 June is already 1 July in London, BST)."""
    from freezegun import freeze_time

    monkeypatch.setenv("PATHWAY_DB", f"sqlite:///{tmp_path / 'clock.db'}")
    monkeypatch.delenv("PATHWAY_NOW", raising=False)
    with freeze_time("2026-06-30 23:30:00"):
        future = CliRunner().invoke(main, ["record", "-", "--json"], catch_exceptions=False, input=json.dumps(
            {"patient": "F1", "type": "referral", "on": "2026-07-02", "data": {"primary": "colorectal"}}) + "\n")
        result = CliRunner().invoke(main, ["worklist", "--json"], catch_exceptions=False)
    assert json.loads(result.stdout)["today"] == "2026-07-01"
    assert "2026-07-02 is in the future (today is 2026-07-01 in Europe/London)" in lines(future.stdout)[0]["error"]


def test_record_on_a_terminal_shows_a_progress_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, `record FILE` shows its progress (on stderr) and the summary."""
    import pty

    monkeypatch.setenv("PATHWAY_DB", f"sqlite:///{tmp_path / 'tty.db'}")
    monkeypatch.setenv("PATHWAY_NOW", NOW)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.chdir(tmp_path)
    output = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 65536)
        output.extend(data)
        return data

    status = pty.spawn([str(Path(sys.executable).with_name("pathway")), "record", str(V1)], read)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0
    assert "recording" in text
    assert "13 events: 13 accepted" in text


def test_reading_commands_refuse_a_database_that_does_not_exist_instead_of_creating_it(
        run, tmp_path: Path) -> None:
    """A mistyped --db or a run from the wrong directory must not answer "nothing due"."""
    missing = tmp_path / "typo.db"
    for args in (["worklist"], ["show", "P1"], ["reminders"], ["verify"], ["run", "--once", "--log"],
                 ["retry", "--all"]):
        result = run(*args, "--db", f"sqlite:///{missing}")
        assert result.exit_code == 3 and f"no database at {missing}" in result.output, args
    assert not missing.exists()
    assert run("record", str(V1), "--db", f"sqlite:///{missing}").exit_code == 0  # recording creates it
    assert run("worklist", "--db", f"sqlite:///{missing}").exit_code == 0


def test_an_unsupported_database_url_is_a_usage_error(run) -> None:
    result = run("worklist", "--db", "mysql://x/y")
    assert result.exit_code == 2 and "unsupported database URL scheme 'mysql'" in result.output


# -- the notifier settings of run and serve (issue 8, D4) ------------------------------------------

BAD_NOTIFIER_SETTINGS = [
    pytest.param("--webhook", ["--webhook", "http://h/hook\r\nX-Injected: 1"], id="webhook"),
    pytest.param("--email", ["--email", "mdt@hospital.example\r\nBcc: x@y.example", "--smtp", "smtp.example:25"],
                 id="email"),
    pytest.param("--from", ["--email", "mdt@hospital.example", "--smtp", "smtp.example:25",
                            "--from", "pathway@hospital.example\r\nBcc: x@y.example"], id="from"),
    pytest.param("--smtp", ["--email", "mdt@hospital.example", "--smtp", "smtp.example\r\nRSET:25"], id="smtp"),
]


@pytest.mark.parametrize(("option", "settings"), BAD_NOTIFIER_SETTINGS)
def test_run_refuses_a_notifier_setting_with_cr_lf_with_status_2_naming_the_option_before_opening_the_database(
        run, tmp_path: Path, option: str, settings: list[str]) -> None:
    database = tmp_path / "never.db"  # opening it first would exit 3 (no database)
    result = run("run", *settings, "--once", "--db", f"sqlite:///{database}")
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {option}: ") and "\\r\\n" in result.output  # shown escaped
    assert not database.exists()


@pytest.mark.parametrize(("option", "settings"), BAD_NOTIFIER_SETTINGS)
def test_serve_refuses_a_notifier_setting_with_cr_lf_with_status_2_naming_the_option_without_serving(
        run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, settings: list[str]) -> None:
    import uvicorn

    served: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(kwargs))
    database = tmp_path / "never.db"  # serve creates a missing SQLite file when it opens it
    result = run("serve", *settings, "--db", f"sqlite:///{database}")
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {option}: ") and "\\r\\n" in result.output
    assert served == [] and not database.exists()


def test_serve_with_several_workers_insists_on_dispatchers_of_their_own(run, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes deliver no reminders: without --no-scheduler, --workers would silently
    leave them undelivered, so serve refuses (status 2) and says what to run."""
    import uvicorn

    for name in ("PATHWAY_DB", "PATHWAY_POLICY", "PATHWAY_LOG_VERBOSE"):  # serve sets them for its workers
        monkeypatch.delenv(name, raising=False)
    served: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(kwargs))
    database = tmp_path / "never.db"
    result = run("serve", "--workers", "2", "--db", f"sqlite:///{database}")
    assert result.exit_code == 2, result.output
    assert "--no-scheduler" in result.output and "pathway run" in result.output
    assert served == [] and not database.exists()

    result = run("serve", "--workers", "2", "--no-scheduler", "--db", f"sqlite:///{database}")
    assert result.exit_code == 0, result.output
    assert served[0]["workers"] == 2 and served[0]["factory"] is True
    assert os.environ["PATHWAY_DB"] == f"sqlite:///{database}"  # what the workers open


# -- logging of the long-running commands (issue 8) ------------------------------------------------

PATHWAY = str(Path(sys.executable).with_name("pathway"))

LOGGING_PROBE = """
import logging, sys
from pathway.cli import configure_logging
configure_logging(verbose=sys.argv[1] == "verbose")
logging.getLogger("transitions.core").info("transitions informs")
logging.getLogger("alembic.runtime.migration").info("alembic informs")
logging.getLogger("transitions.core").warning("transitions warns")
for name in ("pathway", "pathway.web", "pathway.delivery"):
    logging.getLogger(name).info("%s informs", name)
"""

#: `pathway serve` on a new database, uvicorn.run replaced by uvicorn's own logging set-up and three
#: events recorded through the app's engine (transitions fire) and an invalid one (logged by pathway).
SERVE_PROBE = """
import json, sys
import uvicorn

def run(app, **kwargs):
    uvicorn.Config(app, **kwargs)
    for line in open(sys.argv[1]).read().splitlines()[:3]:
        assert app.state.engine.record(json.loads(line)).status == "accepted"
    app.state.engine.record({"patient": "V1", "type": "no_such_type", "on": "2026-10-13"})

uvicorn.run = run
from pathway.cli import main
main(["serve", "--no-scheduler", *sys.argv[2:]])
"""


def env_with_db(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PATHWAY_POLICY"}
    env.update(PATHWAY_DB=f"sqlite:///{tmp_path / 'logs.db'}", PATHWAY_NOW=NOW)
    return env


@pytest.mark.parametrize(("mode", "chatter_shown"), [("default", False), ("verbose", True)])
def test_logging_lets_transitions_and_alembic_info_through_only_when_verbose_and_the_projects_info_always(
        mode: str, chatter_shown: bool) -> None:
    proc = subprocess.run([sys.executable, "-c", LOGGING_PROBE, mode], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ("transitions informs" in proc.stderr) is chatter_shown
    assert ("alembic informs" in proc.stderr) is chatter_shown
    assert "transitions warns" in proc.stderr
    for name in ("pathway", "pathway.web", "pathway.delivery"):
        assert f"INFO {name}: {name} informs" in proc.stderr


@pytest.mark.parametrize(("flags", "chatter_shown"), [([], False), (["-v"], True), (["--verbose"], True)])
def test_serve_logs_no_transitions_or_alembic_info_unless_verbose(tmp_path: Path, flags: list[str],
                                                                 chatter_shown: bool) -> None:
    proc = subprocess.run([sys.executable, "-c", SERVE_PROBE, str(V1), *flags], env=env_with_db(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ("INFO transitions.core: Finished processing state" in proc.stderr) is chatter_shown
    assert ("INFO alembic.runtime.migration: Running upgrade" in proc.stderr) is chatter_shown
    assert "INFO pathway: invalid event patient=V1 type=no_such_type" in proc.stderr


def test_run_logs_no_alembic_info_unless_verbose(tmp_path: Path) -> None:
    env = env_with_db(tmp_path)
    assert subprocess.run([PATHWAY, "record", str(V1)], env=env, capture_output=True, timeout=120).returncode == 0
    quiet = subprocess.run([PATHWAY, "run", "--once", "--log"], env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "delivered 14 reminders" in quiet.stderr, quiet.stderr
    assert "alembic" not in quiet.stderr
    loud = subprocess.run([PATHWAY, "run", "--once", "--log", "-v"], env=env, capture_output=True, text=True, timeout=120)
    assert loud.returncode == 0, loud.stderr
    assert "INFO alembic.runtime.migration: Context impl SQLiteImpl." in loud.stderr


def test_record_and_show_on_a_new_database_print_no_alembic_line(tmp_path: Path) -> None:
    env = env_with_db(tmp_path)
    for command in (["record", str(V1)], ["show", "V1"]):
        proc = subprocess.run([PATHWAY, *command], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "alembic" not in proc.stderr and "Context impl" not in proc.stderr and "upgrade" not in proc.stderr
