"""The `pathway` command line (spec section 7), for coordinators and scripts.

    pathway record FILE|-   [--json]     apply events in order (JSON Lines; '-' = stdin)
    pathway show PATIENT    [--json]     state, history, pending reminders, advice
    pathway worklist [--today DATE] [--days N] [--json]
    pathway run [--log] [--webhook URL] [--email ADDR --smtp HOST:PORT] [--once] [-v]
                                         deliver reminders (until SIGINT/SIGTERM, or once)
    pathway reminders [--patient P] [--status S] [--failed] [--json]
                                         reminders with their delivery record
    pathway retry KEY ... | --all        queue failed deliveries again
    pathway verify [PATIENT ...]         replay histories and compare with what is stored
    pathway db upgrade                   apply database migrations
    pathway serve [--host H] [--port P] [--no-scheduler] [--behind-proxy [--forwarded-allow-ips IPS]] [notifier options of run] [-v]
                                         the web app and the HTTP API (/api/v1)
    pathway user add NAME --role R | user list | user password NAME | user disable NAME
    pathway user unlock NAME | user unlock --address IP   forget failed logins (login throttling)
    pathway token create USER | token list | token revoke TOKEN_ID

Exit status: 0 success; 1 an event was refused or invalid, or a patient is unknown, or a check
failed, or `run --once` left failed deliveries; 2 usage or configuration error; 3 the database
could not be used; 4 another dispatcher already runs on this SQLite database.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from collections.abc import Iterator
from datetime import date
from typing import Any, BinaryIO

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from pathway import clock as clocks
from pathway import config, delivery
from pathway.config import configure_logging
from pathway.engine import Engine, PatientView, Result
from pathway.errors import (
    ConcurrentUpdate,
    ConfigurationError,
    InvalidArgument,
    PathwayError,
    StorageError,
    UnknownPatient,
)
from persistence import db as dbmod
from persistence.ports import DeliveryStatus, PlanStatus
from states.vocabulary import Status

#: Events per transaction for `record`: each commit is an fsync (synchronous=FULL), so large imports
#: commit in big batches; results of a batch are printed once it is committed.
RECORD_BATCH = 2000
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_STORAGE = 3
EXIT_LOCKED = 4


class Fail(click.ClickException, PathwayError):
    """An error message for the user, with its exit status (click prints it and exits)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _open(db_url: str | None, policy_file: str | None, *, create: bool = True) -> Engine:
    """The engine on the chosen database. Commands that only read or deliver (`create=False`)
    refuse a SQLite file that does not exist: creating an empty one would answer "nothing due"
    for a mistyped path or a run from the wrong directory."""
    try:
        policy = config.load_policy(policy_file)
        clock = clocks.from_environment()  # a bad PATHWAY_NOW is reported before anything else
    except ConfigurationError as exc:
        raise Fail(str(exc), EXIT_USAGE) from exc
    if not create:
        path = dbmod.sqlite_file(config.database_url(db_url))
        if path is not None and not os.path.exists(path):
            raise Fail(
                f"no database at {os.path.abspath(path)}: check --db or PATHWAY_DB "
                "(sqlite:///relative/to/here.db, sqlite:////absolute/path.db); `pathway record` creates one",
                EXIT_STORAGE,
            )
    try:
        return Engine.open(db_url, policy=policy, clock=clock)
    except ConfigurationError as exc:
        raise Fail(str(exc), EXIT_USAGE) from exc
    except StorageError as exc:
        raise Fail(str(exc), EXIT_STORAGE) from exc


def verbose_option(fn: Any) -> Any:
    return click.option("-v", "--verbose", is_flag=True,
                        help="Log third-party INFO too (state-machine transitions, database migrations).")(fn)


def common(fn: Any) -> Any:
    fn = click.option("--policy", "policy_file", metavar="FILE", default=None,
                      help="Policy TOML file (else PATHWAY_POLICY, else the built-in defaults).")(fn)
    fn = click.option("--db", "db_url", metavar="URL", default=None,
                      help="Database URL (else PATHWAY_DB, else sqlite:///pathway.db).")(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="liver-pathway")
def main() -> None:
    """Care-pathway engine for patients with liver metastases."""


# -- record --------------------------------------------------------------------------------------


def _lines(stream: BinaryIO, progress: Any = None, task: Any = None) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(stream, start=1):
        if progress is not None:
            progress.advance(task, len(raw))
        text = raw.decode("utf-8", errors="replace").strip()
        if text:
            yield number, text


@main.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON result per input line.")
@click.option("--by", default=None, help="Who records (default: the OS user); an event's own `by` wins.")
@click.option("-v", "--verbose", is_flag=True, help="Human output: list accepted lines too.")
@common
def record(file: str, as_json: bool, by: str | None, verbose: bool, db_url: str | None,
           policy_file: str | None) -> None:
    """Apply the events of FILE (JSON Lines; '-' reads stdin) in order."""
    engine = _open(db_url, policy_file)
    out = _console()
    err = _console(stderr=True)
    try:
        stream: BinaryIO = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
    except OSError as exc:
        raise Fail(f"cannot read {file}: {exc.strerror}", EXIT_USAGE) from exc
    counts = {s: 0 for s in Status}
    last_line = 0
    show_progress = not as_json and file != "-" and err.is_terminal
    try:
        with stream, engine:
            progress = task = None
            if show_progress:
                progress = Progress(TextColumn("recording"), BarColumn(), TransferSpeedColumn(),
                                    TimeRemainingColumn(), console=err, transient=True)
                progress.start()
                task = progress.add_task("record", total=os.fstat(stream.fileno()).st_size)
            try:
                numbers: deque[int] = deque()  # line numbers of events handed over, not yet answered

                def texts() -> Iterator[str]:
                    for number, text in _lines(stream, progress, task):
                        numbers.append(number)
                        yield text

                for result in engine.record_many(texts(), by=by, batch_size=RECORD_BATCH):
                    number = last_line = numbers.popleft()
                    counts[result.status] += 1
                    if as_json:
                        sys.stdout.write(json.dumps({"line": number, **result.as_dict()}) + "\n")
                    elif verbose or result.status is not Status.accepted:
                        _print_result(out, number, result)
                sys.stdout.flush()
            finally:
                if progress is not None:
                    progress.stop()
    except ConcurrentUpdate as exc:
        raise Fail(f"stopped after line {last_line}: {exc}; lines up to {last_line} are stored", EXIT_STORAGE) from exc
    except StorageError as exc:
        raise Fail(f"stopped after line {last_line}: {exc}; lines up to {last_line} are stored", EXIT_STORAGE) from exc
    if not as_json:
        total = sum(counts.values())
        parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        err.print(f"{total} event{'s' if total != 1 else ''}: {parts or 'none'}")
    if counts[Status.refused] or counts[Status.invalid]:
        sys.exit(EXIT_PROBLEM)


_STATUS_STYLE = {
    Status.accepted: "green",
    Status.duplicate: "cyan",
    Status.refused: "bold red",
    Status.invalid: "bold magenta",
}


def _print_result(out: Console, number: int, result: Result) -> None:
    line = Text()
    line.append(f"line {number}: ", style="dim")
    line.append(f"{result.patient or '?'} {result.type or '?'} ")
    line.append(str(result.status), style=_STATUS_STYLE[result.status])
    if result.state:
        line.append(f" -> {result.state}")
    out.print(line)
    if result.error:
        out.print(f"    {result.error}")
    for reason in result.reasons:
        out.print(f"    {reason.code} ({reason.severity}): {reason.message}")
        out.print(f"      source: {reason.source}", style="dim")


# -- show ----------------------------------------------------------------------------------------


def _instant(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return clocks.parse_instant(value, name=f"--{param.name.replace('_', '-')}" if param.name else "instant")
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("patient")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--as-recorded-at", "as_recorded_at", callback=_instant, metavar="INSTANT",
              help="Show the patient as the engine knew them at this instant (ISO, with an offset).")
@common
def show(patient: str, as_json: bool, as_recorded_at: Any, db_url: str | None, policy_file: str | None) -> None:
    """State, history (in date order), pending reminders and advice of PATIENT."""
    with _open(db_url, policy_file, create=False) as engine:
        try:
            view = engine.show(patient, as_recorded_at=as_recorded_at)
        except UnknownPatient as exc:
            raise Fail(str(exc) if as_recorded_at is None else f"{exc} (as recorded at {as_recorded_at.isoformat()})",
                       EXIT_PROBLEM) from exc
    if as_json:
        sys.stdout.write(json.dumps(view.as_dict(), indent=2) + "\n")
        return
    _print_view(_console(), view)


def _print_view(out: Console, view: PatientView) -> None:
    out.print(Text.assemble((view.patient, "bold"), f"  {view.primary} primary  state ", (view.state, "bold cyan"),
                            f"  (version {view.version})"))
    table = Table(title="Pending reminders", title_justify="left")
    for column in ("due", "kind", "detail", "notify at (UTC)"):
        table.add_column(column)
    for r in view.reminders:
        table.add_row(r.due_on.isoformat(), r.kind, r.detail, r.notify_at.strftime("%Y-%m-%d %H:%M"))
    out.print(table if view.reminders else "No pending reminders.")
    history = Table(title="History", title_justify="left")
    for column in ("#", "on", "event", "status", "by", "reasons / error"):
        history.add_column(column)
    for h in view.history:
        notes = ", ".join(r["code"] for r in h.reasons) or (h.error or "")
        if h.late_entry:
            notes = f"entered {h.late_by_days} days late" + (f"; {notes}" if notes else "")
        status = h.status + (" (voided)" if h.voided else "")
        history.add_row(str(h.id), h.on.isoformat() if h.on else "", h.type or "?",
                        Text(status, style=_STATUS_STYLE.get(Status(h.status), "")), h.by or "", notes)
    out.print(history)
    for advice in view.advice:
        out.print(f"[yellow]advice[/] {advice['code']}: {advice['message']} [dim]({advice['source']})[/]")


# -- worklist ------------------------------------------------------------------------------------


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"must be a date YYYY-MM-DD, got {value!r}") from None


@main.command()
@click.option("--today", callback=_date, metavar="DATE", help="Clinic-local date (default: today).")
@click.option("--days", type=click.IntRange(0, 3660), default=7, show_default=True, help="Look ahead N days.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common
def worklist(today: date | None, days: int, as_json: bool, db_url: str | None, policy_file: str | None) -> None:
    """Reminders due by TODAY + DAYS, overdue first."""
    with _open(db_url, policy_file, create=False) as engine:
        today = today or engine.today()
        try:
            items = engine.worklist(today, days)
        except InvalidArgument as exc:  # --today near the end of the calendar
            raise Fail(str(exc), EXIT_USAGE) from exc
    if as_json:
        payload = {"today": today.isoformat(), "days": days, "reminders": [i.as_dict() for i in items]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    out = _console()
    overdue = sum(1 for i in items if i.overdue)
    table = Table(title=f"Worklist for {today.isoformat()} (+{days} days): {len(items)} due, {overdue} overdue",
                  title_justify="left")
    for column in ("due", "in", "patient", "state", "kind", "detail", "reminder"):
        table.add_column(column)
    for item in items:
        r = item.reminder
        style = "red" if item.days < 0 else "yellow" if item.days == 0 else "green"
        when = f"{-item.days}d overdue" if item.days < 0 else "today" if item.days == 0 else f"{item.days}d"
        sent = Text("DELIVERY FAILED", style="bold red") if r.delivery == "failed" else Text(r.delivery or "")
        table.add_row(r.due_on.isoformat(), Text(when, style=style), r.patient, r.state or "", r.kind, r.detail,
                      sent)
    out.print(table if items else f"Nothing due by {today.isoformat()} + {days} days.")


# -- run, reminders ------------------------------------------------------------------------------


def _smtp_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise Fail(f"--smtp must be HOST:PORT (e.g. smtp.hospital.nhs.uk:25), got {value!r}", EXIT_USAGE)
    return host, int(port)


def _notifiers(log_: bool, webhooks: tuple[str, ...], emails: tuple[str, ...], smtp: str | None,
               sender: str, timeout: float) -> list[Any]:
    notifiers: list[Any] = []
    if log_:
        notifiers.append(delivery.LogNotifier())
    for url in webhooks:
        notifiers.append(delivery.WebhookNotifier(url, timeout=timeout))
    if emails and smtp is None:
        raise Fail("--email needs --smtp HOST:PORT (the relay that sends it)", EXIT_USAGE)
    if smtp is not None and not emails:
        raise Fail("--smtp needs at least one --email ADDRESS to send to", EXIT_USAGE)
    if emails:
        host, port = _smtp_address(smtp)  # type: ignore[arg-type]
        notifiers.append(delivery.EmailNotifier(list(emails), host, port, sender=sender, timeout=timeout))
    if not notifiers:
        raise Fail("choose where reminders go: --log, --webhook URL, and/or --email ADDRESS --smtp HOST:PORT",
                   EXIT_USAGE)
    return notifiers


def notifier_options(fn: Any) -> Any:
    """Where reminders go: the options of `run` and `serve` (see `_notifiers`)."""
    for option in reversed([
        click.option("--log", "log_", is_flag=True, help="Print one JSON line per reminder on stdout."),
        click.option("--webhook", "webhooks", multiple=True, metavar="URL",
                     help="POST each reminder as JSON to URL (Idempotency-Key: the reminder's key). Repeatable."),
        click.option("--email", "emails", multiple=True, metavar="ADDR",
                     help="E-mail each reminder to ADDR. Repeatable."),
        click.option("--smtp", metavar="HOST:PORT", default=None, help="SMTP relay for --email."),
        click.option("--from", "sender", metavar="ADDR", default="pathway@localhost", show_default=True,
                     help="Sender address of the e-mails."),
        click.option("--timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
                     help="Seconds a webhook or SMTP relay may take per reminder."),
    ]):
        fn = option(fn)
    return fn


def _report_line(report: delivery.DispatchReport) -> str:
    return (f"delivered {report.sent} reminders ({report.late} late), {report.retried} to retry, "
            f"{report.failed} failed")


@main.command()
@notifier_options
@click.option("--once", is_flag=True, help="Deliver everything due now and exit (for cron and systemd timers).")
@click.option("--sweep", type=click.FloatRange(0.05, 3600), default=delivery.SWEEP_SECONDS, show_default=True,
              help="Seconds between safety sweeps of the reminder table.")
@verbose_option
@common
def run(log_: bool, webhooks: tuple[str, ...], emails: tuple[str, ...], smtp: str | None, sender: str,
        timeout: float, once: bool, sweep: float, verbose: bool, db_url: str | None, policy_file: str | None) -> None:
    """Deliver reminders when they fall due, until SIGINT/SIGTERM (graceful: the delivery in
    flight is finished). Reminders that fell due while nothing ran are delivered at start, late."""
    import signal
    import threading

    # a long-running service: timestamped warnings (retries, failures, orphaned claims) on stderr
    configure_logging(verbose)
    try:
        notifiers = _notifiers(log_, webhooks, emails, smtp, sender, timeout)
    except ConfigurationError as exc:
        raise Fail(str(exc), EXIT_USAGE) from exc
    err = _console(stderr=True)
    engine = _open(db_url, policy_file, create=False)
    with engine:
        try:
            if once:
                report = engine.dispatch_due(notifiers=notifiers)
                err.print(_report_line(report))
                if report.failed:
                    raise SystemExit(EXIT_PROBLEM)
                return
            stop = threading.Event()

            def _stop(signum: int, _frame: Any) -> None:
                stop.set()
                engine.interrupt_delivery()  # finish the delivery in flight, start no other

            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
            engine.start_scheduler(notifiers, sweep_seconds=sweep,
                                   on_report=lambda report: err.print(_report_line(report)))
            err.print(f"delivering reminders (sweep every {sweep:g} s); stop with Ctrl-C or SIGTERM")
            while not stop.wait(1.0):
                pass
            engine.stop_scheduler(wait=True)
            err.print("stopped")
        except delivery.DispatcherLocked as exc:
            raise Fail(str(exc), EXIT_LOCKED) from exc
        except StorageError as exc:
            raise Fail(str(exc), EXIT_STORAGE) from exc


@main.command()
@click.option("--patient", default=None, help="One patient's reminders.")
@click.option("--status", type=click.Choice([*PlanStatus, *(s for s in DeliveryStatus if s is not DeliveryStatus.claimed)]),
              default=None, help="pending/done/cancelled: the plan; queued/sent/failed: the delivery.")
@click.option("--failed", is_flag=True, help="Same as --status failed: deliveries that gave up.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most N reminders.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common
def reminders(patient: str | None, status: str | None, failed: bool, limit: int | None, as_json: bool,
              db_url: str | None, policy_file: str | None) -> None:
    """Reminders with their delivery record, by due date."""
    if failed:
        if status not in (None, "failed"):
            raise Fail("--failed and --status cannot be combined", EXIT_USAGE)
        status = "failed"
    plan = status if status in PlanStatus.__members__ else None
    sent = status if status in ("queued", "sent", "failed") else None
    with _open(db_url, policy_file, create=False) as engine:
        if patient is not None:
            try:
                engine.show(patient)
            except UnknownPatient as exc:
                raise Fail(str(exc), EXIT_PROBLEM) from exc
        rows = engine.deliveries(patient=patient, status=plan, delivery=sent, limit=limit)
    if as_json:
        sys.stdout.write(json.dumps({"reminders": [r.as_dict() for r in rows]}, indent=2) + "\n")
        return
    out = _console()
    table = Table(title=f"{len(rows)} reminders", title_justify="left")
    for column in ("due", "patient", "kind", "status", "delivery", "attempts", "sent at", "late", "error"):
        table.add_column(column)
    for r in rows:
        style = "red" if r.delivery == "failed" else "green" if r.delivery == "sent" else ""
        shown = r.delivery if r.status == "pending" or r.delivery != "queued" else "not sent"
        late = "" if r.late_by_s is None else Text(f"{r.late_by_s} s late", style="yellow") if r.late else "on time"
        sent_at = "" if r.sent_at is None else r.sent_at.isoformat(timespec="seconds")
        table.add_row(r.due_on.isoformat(), r.patient, r.kind, r.status, Text(shown, style=style),
                      str(r.attempts), sent_at, late, r.last_error or "")
    out.print(table if rows else "No reminders match.")


@main.command()
@click.argument("keys", nargs=-1)
@click.option("--all", "all_failed", is_flag=True, help="Every failed delivery of a pending reminder.")
@common
def retry(keys: tuple[str, ...], all_failed: bool, db_url: str | None, policy_file: str | None) -> None:
    """Queue failed deliveries again once their cause is fixed (KEY ... or --all): the
    dispatcher sends them at its next run, with a fresh count of attempts."""
    if bool(keys) == all_failed:
        raise Fail("give the keys of the failed reminders (see `pathway reminders --failed`), or --all", EXIT_USAGE)
    with _open(db_url, policy_file, create=False) as engine:
        count = engine.retry_failed(None if all_failed else keys)
    _console().print(f"{count} failed deliveries queued again")
    if keys and count < len(keys):
        raise Fail(f"{len(keys) - count} of the keys given are not failed deliveries of pending reminders",
                   EXIT_PROBLEM)


# -- verify, db ----------------------------------------------------------------------------------


@main.command()
@click.argument("patients", nargs=-1)
@common
def verify(patients: tuple[str, ...], db_url: str | None, policy_file: str | None) -> None:
    """Replay each patient's history (all patients by default) and compare it with the stored
    snapshot and pending reminders."""
    out = _console()
    bad = 0
    with _open(db_url, policy_file, create=False) as engine:
        ids = list(patients) or [p for p, _ in engine.patients()]
        for patient in ids:
            try:
                problems = engine.verify(patient)
            except UnknownPatient as exc:
                raise Fail(str(exc), EXIT_PROBLEM) from exc
            if problems:
                bad += 1
                out.print(f"[red]{patient}[/]: " + "; ".join(problems))
    out.print(f"{len(ids)} patient(s) checked, {bad} differ")
    if bad:
        sys.exit(EXIT_PROBLEM)


@main.group(name="db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command()
@click.option("--db", "db_url", metavar="URL", default=None, help="Database URL (else PATHWAY_DB).")
@click.option("--policy", "policy_file", metavar="FILE", default=None,
              help="Policy TOML (else PATHWAY_POLICY): snapshots rebuilt from history follow it.")
def upgrade(db_url: str | None, policy_file: str | None) -> None:
    """Apply the database migrations up to this version's schema, then rebuild from their
    history the patient snapshots stored in an older shape."""
    url = config.database_url(db_url)
    try:
        engine = dbmod.create(url)
        before = dbmod.current_revision(engine)
        dbmod.upgrade(engine)
        after = dbmod.current_revision(engine)
        engine.dispose()
        with _open(url, policy_file) as pathway_engine:
            rewritten = pathway_engine.upgrade_snapshots()
    except (dbmod.DatabaseUnavailable, PathwayError) as exc:
        raise Fail(str(exc), EXIT_STORAGE) from exc
    click.echo(f"schema {before or 'empty'} -> {after}")
    if rewritten:
        click.echo(f"{rewritten} patient snapshot(s) rebuilt from their history (new fields: waiting-time clocks)")


# -- web app, accounts, API tokens (issue 4) ------------------------------------------------------


def _accounts(engine: Engine) -> Any:
    from persistence.accounts import Accounts

    return Accounts(engine.repository.engine, engine.clock)


def _new_password(name: str) -> str:
    from persistence.accounts import AccountError, check_password

    password = os.environ.get("PATHWAY_PASSWORD")
    if password is None:
        password = click.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    try:
        check_password(password)  # the one rule, shared with the admin page
    except AccountError as exc:
        raise Fail(str(exc), EXIT_USAGE) from exc
    return password


@main.group(name="user")
def user_group() -> None:
    """Accounts of the web app and the HTTP API (roles: viewer < coordinator < admin)."""


@user_group.command(name="add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "coordinator", "admin"]), required=True,
              help="viewer: read; coordinator: read and record; admin: also manage users.")
@common
def user_add(name: str, role: str, db_url: str | None, policy_file: str | None) -> None:
    """Add user NAME (the password is asked twice, or taken from PATHWAY_PASSWORD)."""
    from persistence.accounts import AccountError

    password = _new_password(name)
    with _open(db_url, policy_file) as engine:
        try:
            _accounts(engine).add_user(name, role, password)
        except AccountError as exc:
            raise Fail(str(exc), EXIT_USAGE) from exc
    click.echo(f"user {name} added ({role})")


@user_group.command(name="password")
@click.argument("name")
@common
def user_password(name: str, db_url: str | None, policy_file: str | None) -> None:
    """Set a new password for NAME (ends the user's sessions)."""
    from persistence.accounts import AccountError

    password = _new_password(name)
    with _open(db_url, policy_file) as engine:
        try:
            _accounts(engine).set_password(name, password)
        except AccountError as exc:
            raise Fail(str(exc), EXIT_USAGE) from exc
    click.echo(f"password of {name} changed")


@user_group.command(name="disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the user again.")
@common
def user_disable(name: str, enable: bool, db_url: str | None, policy_file: str | None) -> None:
    """Disable NAME: no login, no API access with its tokens (--enable undoes it)."""
    from persistence.accounts import AccountError

    with _open(db_url, policy_file) as engine:
        try:
            _accounts(engine).set_disabled(name, not enable)
        except AccountError as exc:
            raise Fail(str(exc), EXIT_USAGE) from exc
    click.echo(f"user {name} {'enabled' if enable else 'disabled'}")


@user_group.command(name="unlock")
@click.argument("name", required=False)
@click.option("--address", metavar="IP", default=None, help="Forget the failed logins from this client address instead.")
@common
def user_unlock(name: str | None, address: str | None, db_url: str | None, policy_file: str | None) -> None:
    """Forget the failed logins of user NAME (every browser and address), or from --address IP:
    their logins no longer wait."""
    import getpass
    import logging

    from persistence.accounts import AccountError

    if (name is None) == (address is None):
        raise Fail("give a user NAME or --address IP (one of them)", EXIT_USAGE)
    with _open(db_url, policy_file) as engine:
        try:
            forgotten = (_accounts(engine).unlock_user(name) if name is not None
                         else _accounts(engine).unlock_address(address or ""))
        except AccountError as exc:
            raise Fail(str(exc), EXIT_PROBLEM) from exc
    try:
        operator = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        operator = f"uid {os.getuid()}"
    what = f"the logins of {name}" if name is not None else f"the logins from {address}"
    logging.getLogger("pathway.cli").info("%s unlocked %s (command line)", operator, what)
    click.echo(f"unlocked {what}: {forgotten} failed login{'' if forgotten == 1 else 's'} forgotten")


@user_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common
def user_list(as_json: bool, db_url: str | None, policy_file: str | None) -> None:
    """The users, with their roles."""
    with _open(db_url, policy_file) as engine:
        users = _accounts(engine).users()
    if as_json:
        sys.stdout.write(json.dumps([{"name": u.name, "role": u.role, "disabled": u.disabled,
                                      "created_at": u.created_at.isoformat()} for u in users], indent=2) + "\n")
        return
    table = Table(title=f"{len(users)} users", title_justify="left")
    for column in ("name", "role", "created", "status"):
        table.add_column(column)
    for u in users:
        table.add_row(u.name, u.role, u.created_at.strftime("%Y-%m-%d %H:%M"), "disabled" if u.disabled else "")
    _console().print(table if users else "No users: add one with `pathway user add NAME --role ROLE`.")


@main.group(name="token")
def token_group() -> None:
    """Bearer tokens of the HTTP API (stored hashed; a token is shown once)."""


@token_group.command(name="create")
@click.argument("name")
@click.option("--label", default="", help="What the token is for (e.g. the system that uses it).")
@common
def token_create(name: str, label: str, db_url: str | None, policy_file: str | None) -> None:
    """Create an API token acting as user NAME and print it (once: it is stored only hashed)."""
    from persistence.accounts import AccountError

    with _open(db_url, policy_file) as engine:
        try:
            token_id, secret = _accounts(engine).create_token(name, label)
        except AccountError as exc:
            raise Fail(str(exc), EXIT_USAGE) from exc
    click.echo(secret)
    click.echo(f"token {token_id} for {name}: use it as 'Authorization: Bearer <token>'; it is not shown again "
               f"(revoke with `pathway token revoke {token_id}`)", err=True)


@token_group.command(name="revoke")
@click.argument("token_id", type=int)
@common
def token_revoke(token_id: int, db_url: str | None, policy_file: str | None) -> None:
    """Revoke the API token TOKEN_ID (see `pathway token list`)."""
    with _open(db_url, policy_file) as engine:
        if not _accounts(engine).revoke_token(token_id):
            raise Fail(f"no active token {token_id}", EXIT_PROBLEM)
    click.echo(f"token {token_id} revoked")


@token_group.command(name="list")
@common
def token_list(db_url: str | None, policy_file: str | None) -> None:
    """The API tokens (never their secrets)."""
    with _open(db_url, policy_file) as engine:
        tokens = _accounts(engine).tokens()
    table = Table(title=f"{len(tokens)} tokens", title_justify="left")
    for column in ("id", "user", "label", "created", "revoked"):
        table.add_column(column)
    for t in tokens:
        table.add_row(str(t.id), t.user, t.name, t.created_at.strftime("%Y-%m-%d %H:%M"),
                      t.revoked_at.strftime("%Y-%m-%d %H:%M") if t.revoked_at else "")
    _console().print(table if tokens else "No tokens.")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes. Above 1 they deliver no reminders: run `pathway run` beside them "
                   "(and say --no-scheduler). Meant for PostgreSQL.")
@click.option("--no-scheduler", is_flag=True, help="Do not deliver reminders in this process.")
@click.option("--behind-proxy", is_flag=True,
              help="Trust X-Forwarded-Proto/-For from a reverse proxy (TLS terminated there: Secure cookies).")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True, metavar="IPS",
              help="With --behind-proxy: the proxy addresses (comma-separated) whose X-Forwarded-* are trusted.")
@notifier_options
@verbose_option
@common
def serve(host: str, port: int, workers: int, no_scheduler: bool, behind_proxy: bool, forwarded_allow_ips: str,
          log_: bool, webhooks: tuple[str, ...], emails: tuple[str, ...], smtp: str | None, sender: str,
          timeout: float, verbose: bool, db_url: str | None, policy_file: str | None) -> None:
    """Serve the coordinator web app and the HTTP API (/api/v1), delivering reminders in-process
    (through the notifier options given; --log when none is)."""
    import uvicorn

    from pathway.web import create_app

    if workers > 1 and not no_scheduler:
        raise Fail("--workers runs several server processes, which deliver no reminders: run `pathway run` "
                   "(several on PostgreSQL, one on SQLite) beside them and add --no-scheduler", EXIT_USAGE)
    configure_logging(verbose)
    notifiers = None
    if not no_scheduler:
        if not (log_ or webhooks or emails or smtp):
            log_ = True
        try:
            notifiers = _notifiers(log_, webhooks, emails, smtp, sender, timeout)
        except ConfigurationError as exc:
            raise Fail(str(exc), EXIT_USAGE) from exc
    engine = _open(db_url, policy_file)  # creates and migrates the database, or says why it cannot
    options: dict[str, Any] = dict(host=host, port=port, proxy_headers=behind_proxy,
                                   forwarded_allow_ips=forwarded_allow_ips if behind_proxy else None,
                                   log_level="info", server_header=False)
    with engine:
        if _accounts(engine).count_users() == 0:
            _console(stderr=True).print("[yellow]no users yet[/]: add one with `pathway user add NAME --role coordinator`")
        _console(stderr=True).print(f"serving on http://{host}:{port}/ (API: http://{host}:{port}/api/v1/openapi.json)"
                                    + (f" with {workers} worker processes" if workers > 1 else ""))
        if workers == 1:
            app = create_app(engine, scheduler=not no_scheduler, notifiers=notifiers)
            uvicorn.run(app, **options)
            return
    # the workers open the database and policy resolved here (relative paths: same working directory)
    os.environ["PATHWAY_DB"] = config.database_url(db_url)
    if policy_file is not None:
        os.environ["PATHWAY_POLICY"] = os.path.abspath(policy_file)
    os.environ[config.VERBOSE_ENV] = "1" if verbose else ""
    uvicorn.run("pathway.web.app:create_app_from_environment", factory=True, workers=workers, **options)


if __name__ == "__main__":  # pragma: no cover
    main()
