"""The `pathway` command line (spec section 7), for coordinators and scripts.

    pathway record FILE|-   [--json]     apply events in order (JSON Lines; '-' = stdin)
    pathway show PATIENT    [--json]     state, history, pending reminders, advice
    pathway worklist [--today DATE] [--days N] [--json]
    pathway verify [PATIENT ...]         replay histories and compare with what is stored
    pathway db upgrade                   apply database migrations

Exit status: 0 success; 1 an event was refused or invalid, or a patient is unknown, or a check
failed; 2 usage or configuration error; 3 the database could not be used.
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

from pathway import config
from pathway.engine import Engine, PatientView, Result
from pathway.errors import ConcurrentUpdate, ConfigurationError, PathwayError, StorageError, UnknownPatient
from persistence import db as dbmod
from states.vocabulary import Status

#: Events per transaction for `record`: each commit is an fsync (synchronous=FULL), so large imports
#: commit in big batches; results of a batch are printed once it is committed.
RECORD_BATCH = 2000
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_STORAGE = 3


class Fail(click.ClickException):
    """An error message for the user, with its exit status."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _open(db_url: str | None, policy_file: str | None) -> Engine:
    try:
        policy = config.load_policy(policy_file)
        return Engine.open(db_url, policy=policy)
    except ConfigurationError as exc:
        raise Fail(str(exc), EXIT_USAGE) from exc
    except StorageError as exc:
        raise Fail(str(exc), EXIT_STORAGE) from exc


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


@main.command()
@click.argument("patient")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common
def show(patient: str, as_json: bool, db_url: str | None, policy_file: str | None) -> None:
    """State, history, pending reminders and advice of PATIENT."""
    with _open(db_url, policy_file) as engine:
        try:
            view = engine.show(patient)
        except UnknownPatient as exc:
            raise Fail(str(exc), EXIT_PROBLEM) from exc
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
    with _open(db_url, policy_file) as engine:
        today = today or engine.today()
        items = engine.worklist(today, days)
    if as_json:
        payload = {"today": today.isoformat(), "days": days, "reminders": [i.as_dict() for i in items]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    out = _console()
    overdue = sum(1 for i in items if i.overdue)
    table = Table(title=f"Worklist for {today.isoformat()} (+{days} days): {len(items)} due, {overdue} overdue",
                  title_justify="left")
    for column in ("due", "in", "patient", "state", "kind", "detail"):
        table.add_column(column)
    for item in items:
        r = item.reminder
        style = "red" if item.days < 0 else "yellow" if item.days == 0 else "green"
        when = f"{-item.days}d overdue" if item.days < 0 else "today" if item.days == 0 else f"{item.days}d"
        table.add_row(r.due_on.isoformat(), Text(when, style=style), r.patient, r.state or "", r.kind, r.detail)
    out.print(table if items else f"Nothing due by {today.isoformat()} + {days} days.")


# -- verify, db ----------------------------------------------------------------------------------


@main.command()
@click.argument("patients", nargs=-1)
@common
def verify(patients: tuple[str, ...], db_url: str | None, policy_file: str | None) -> None:
    """Replay each patient's history (all patients by default) and compare it with the stored
    snapshot and pending reminders."""
    out = _console()
    bad = 0
    with _open(db_url, policy_file) as engine:
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
def upgrade(db_url: str | None) -> None:
    """Apply the database migrations up to this version's schema."""
    url = config.database_url(db_url)
    try:
        engine = dbmod.create(url)
        before = dbmod.current_revision(engine)
        dbmod.upgrade(engine)
        after = dbmod.current_revision(engine)
    except (dbmod.DatabaseUnavailable, PathwayError) as exc:
        raise Fail(str(exc), EXIT_STORAGE) from exc
    click.echo(f"schema {before or 'empty'} -> {after}")


if __name__ == "__main__":  # pragma: no cover
    main()
