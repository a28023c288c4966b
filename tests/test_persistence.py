"""What only the SQL repository has, on SQLite and PostgreSQL alike: creating and migrating a
database, the append-only event log's triggers, URLs, SQLite's pragmas and bulk imports. The
repository contract itself (what the engine relies on, the in-memory twin included) is
tests/test_repository_contract.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from persistence import db
from persistence.repository import NewEvent, Repository

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def repo(db_url: str):
    repository = Repository.open(db_url)
    yield repository
    repository.close()


def test_a_new_database_is_created_and_migrated_on_first_use(db_url: str) -> None:
    repository = Repository.open(db_url)
    try:
        assert db.current_revision(repository.engine) == db.head_revision()
        with repository.engine.connect() as conn:
            assert {"patient", "event_log", "reminder"} <= set(sa.inspect(conn).get_table_names())
    finally:
        repository.close()


def test_opening_a_migrated_database_again_changes_nothing(db_url: str) -> None:
    Repository.open(db_url).close()
    repository = Repository.open(db_url)
    assert db.current_revision(repository.engine) == db.head_revision()
    repository.close()


def test_a_database_at_an_unknown_revision_is_refused_with_a_clear_message(db_url: str) -> None:
    repository = Repository.open(db_url)
    with repository.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    with pytest.raises(db.SchemaError, match="newer version"):
        db.ensure_schema(repository.engine)
    repository.close()


def test_a_database_with_foreign_tables_is_not_taken_over(db_url: str) -> None:
    engine = db.create(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE somebody_elses (x integer)"))
    with pytest.raises(db.SchemaError, match="no pathway schema version"):
        db.ensure_schema(engine)
    engine.dispose()


def test_the_event_log_refuses_updates_and_deletes(repo: Repository) -> None:
    with repo.write() as tx:
        event_id = tx.append(NewEvent(status="invalid", payload={"x": 1}, recorded_at=NOW, error="bad"))
    for statement in (f"UPDATE event_log SET status = 'accepted' WHERE id = {event_id}",
                      f"DELETE FROM event_log WHERE id = {event_id}"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), repo.engine.begin() as conn:
            conn.execute(sa.text(statement))
    with repo.read() as tx:
        assert tx.conn.execute(sa.text("SELECT status FROM event_log")).scalar_one() == "invalid"


def test_an_unsupported_database_url_is_refused() -> None:
    """A configuration mistake (the engine reports it as such: `pathway` exits 2), not an outage."""
    with pytest.raises(sa.exc.ArgumentError, match="unsupported"):
        db.create("mysql://root@localhost/test")


def test_a_sqlite_file_in_a_missing_folder_is_refused_with_the_folder_named(tmp_path) -> None:
    with pytest.raises(db.DatabaseUnavailable, match="does not exist"):
        db.create(f"sqlite:///{tmp_path}/missing/pathway.db")


def test_postgres_spellings_are_normalised_to_psycopg3() -> None:
    assert db.normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("pathway.db") == "sqlite:///pathway.db"


def test_sqlite_connections_use_wal_full_sync_foreign_keys_and_a_busy_timeout(sqlite_url: str) -> None:
    repository = Repository.open(sqlite_url)
    with repository.engine.connect() as conn:
        pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                   for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
    repository.close()
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": db.BUSY_TIMEOUT_MS}


def test_a_database_at_an_older_revision_is_refused_until_pathway_db_upgrade(db_url: str) -> None:
    """Migrations are deliberate: an outdated database is not silently changed on open."""
    engine = db.create(db_url)
    cfg = db.alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        from alembic import command

        command.upgrade(cfg, "0001")
    with pytest.raises(db.SchemaError, match="pathway db upgrade"):
        db.ensure_schema(engine)
    db.upgrade(engine)
    db.ensure_schema(engine)
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as conn:
        names = {ix["name"] for ix in sa.inspect(conn).get_indexes("reminder")}
    assert {"ix_reminder_pending_due", "ix_reminder_outbox", "ix_reminder_failed"} <= names
    assert "ix_reminder_pending_notify" not in names  # replaced by the outbox index (0003)
    engine.dispose()


def test_upgrading_to_0003_queues_existing_reminders_for_delivery_at_their_notify_at(db_url: str) -> None:
    """A database of the engine before reminder delivery keeps its reminders: each becomes a queued
    delivery whose send_after is its notify_at, and a downgrade gives the old table back."""
    from alembic import command

    engine = db.create(db_url)
    cfg = db.alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.execute(sa.text(
            "INSERT INTO patient (id, primary_tumour, state, version, snapshot, referred_on, latest_on, created_at, "
            "updated_at) VALUES ('P1', 'colorectal', 'referral', 1, '{}', '2027-01-04', '2027-01-04', "
            "'2027-01-04 09:00:00', '2027-01-04 09:00:00')"))
        conn.execute(sa.text(
            "INSERT INTO reminder (key, patient, kind, due_on, notify_at, status, detail, state, created_at, "
            "updated_at) VALUES ('P1:mdt_due:1', 'P1', 'mdt_due', '2027-01-18', '2027-01-16 08:00:00', 'pending', "
            "'', 'referral', '2027-01-04 09:00:00', '2027-01-04 09:00:00')"))
    db.upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT delivery, attempts, send_after = notify_at FROM reminder")).one()
    assert tuple(row) == ("queued", 0, True)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("reminder")}
        assert conn.execute(sa.text("SELECT count(*) FROM reminder")).scalar() == 1
    assert "delivery" not in columns and "send_after" not in columns
    engine.dispose()


def test_upgrading_to_0005_keeps_login_failures_as_unknown_device_ones_and_downgrades(db_url: str) -> None:
    """Migration 0005 (known devices, issue 8): existing failures count as from unknown browsers;
    a downgrade gives the 0004 table and indexes back, keeping the failures."""
    from alembic import command

    engine = db.create(db_url)
    cfg = db.alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
        conn.execute(sa.text("INSERT INTO login_failure (name, address, at) "
                             "VALUES ('alice', '10.1.1.1', '2027-01-04 09:00:00')"))
    db.upgrade(engine)

    def schema() -> tuple[set[str], set[str], set[str]]:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            return ({c["name"] for c in inspector.get_columns("login_failure")},
                    {ix["name"] for ix in inspector.get_indexes("login_failure")},
                    set(inspector.get_table_names()))

    columns, indexes, tables = schema()
    assert "device" in columns and "known_device" in tables
    assert indexes == {"ix_login_failure_name_device_at", "ix_login_failure_address_device_at"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name, device FROM login_failure")).one() == ("alice", None)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    columns, indexes, tables = schema()
    assert "device" not in columns and "known_device" not in tables
    assert indexes == {"ix_login_failure_name_at", "ix_login_failure_address_at"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM login_failure")).scalar() == 1
    engine.dispose()


def test_a_bulk_import_on_sqlite_keeps_its_wal_bounded(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-to-back commits never let passive checkpoints restart the WAL; the importer restarts it
    itself once the log passes BULK_WAL_LIMIT, so the file stays near the limit instead of growing
    with the import (it reached 28 GB at 100,000 patients before)."""
    import os

    from pathway.clock import fixed_clock
    from pathway.engine import Engine

    monkeypatch.setattr(db, "BULK_WAL_LIMIT", 256 * 1024)
    monkeypatch.setattr(db.Checkpointer.__init__, "__defaults__", (0.005,))  # passes every 5 ms
    engine = Engine.open(sqlite_url, clock=fixed_clock(datetime(2027, 1, 1, 9, tzinfo=UTC)))
    events = [{"patient": f"W{n:05d}", "type": "referral", "on": "2026-06-01", "data": {"primary": "colorectal"}}
              for n in range(3000)]
    wal = f"{db.sqlite_path(engine.repository.engine)}-wal"
    largest = 0
    for n, result in enumerate(engine.record_many(events, batch_size=50)):
        assert result.status == "accepted"
        if n % 50 == 49:
            largest = max(largest, os.path.getsize(wal))
    engine.close()
    # 3,000 referrals write several MB of WAL; bounded, the file stays within a few batches of the limit
    assert largest < 2 * 1024 * 1024, largest
