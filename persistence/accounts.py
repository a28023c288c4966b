"""Accounts of the web app and the HTTP API: users, API tokens, login sessions, login throttling.

All the SQL of accounts lives here (SQLAlchemy Core over the repository's engine; SQLite and
PostgreSQL). Secrets are never stored: passwords as argon2id hashes, API tokens and session ids as
SHA-256 hex digests of random secrets (a token is shown once, when it is created).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from persistence import db
from persistence.tables import login_failure_table, session_table, token_table, user_table

ROLES = ("viewer", "coordinator", "admin")
#: Tokens whose accounts `token_user` remembers at most (see Accounts.token_cache_seconds).
TOKEN_CACHE_SIZE = 1000
MIN_PASSWORD = 10
NAME_MAX = 64
TOKEN_PREFIX = "pwt_"
SESSION_HOURS = 12
#: Failed logins allowed per user name, and per client address, in the window.
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)

_hasher = PasswordHasher()
# a hash to verify against when the user does not exist, so both cases take the same time
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(ValueError):
    """A request about accounts that cannot be done (message for the user)."""


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    role: str
    disabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    user: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    account: Account
    csrf: str
    expires_at: datetime


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()




class Accounts:
    """Users, tokens, sessions and login failures stored in the pathway database."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime], *, token_cache_seconds: float = 0.0,
                 monotonic: Callable[[], float] | None = None):
        """`clock` gives now (the engine's clock: persistence reads no system time itself).

        With `token_cache_seconds` and a `monotonic` clock, `token_user` remembers the accounts
        of tokens it found for that long (the web app: one query fewer per API request). A
        change made through this object (revoke, disable, role) forgets them at once; one made
        by another process is seen within `token_cache_seconds`."""
        self.engine = engine
        self.clock = clock
        self.token_cache_seconds = token_cache_seconds if monotonic is not None else 0.0
        self._monotonic = monotonic
        self._token_cache: OrderedDict[str, tuple[Account, float]] = OrderedDict()
        self._token_cache_lock = threading.Lock()

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A connection for one write transaction (BEGIN IMMEDIATE on SQLite); driver errors that
        are outages or conflicts come out as DatabaseUnavailable / WriteConflict (db.guard)."""
        with db.guard(), self.engine.connect() as conn:
            yield conn.execution_options(pathway_write=True)

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with db.guard(), self.engine.connect() as conn:
            yield conn

    # -- users -------------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password: str) -> Account:
        name = name.strip()
        if not name or len(name) > NAME_MAX or any(c.isspace() for c in name):
            raise AccountError(f"a user name is 1 to {NAME_MAX} characters without spaces, got {name!r}")
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        check_password(password)
        now = self.clock()
        with self._write() as conn, conn.begin():
            # names are compared without case: "alice" and "Alice" would be two people in the audit log
            clash = conn.execute(
                sa.select(user_table.c.name).where(sa.func.lower(user_table.c.name) == name.lower())
            ).first()
            if clash:
                raise AccountError(f"user {clash.name} already exists" + ("" if clash.name == name else
                                   f" (names are compared without case: choose another than {name})"))
            new_id = conn.execute(
                user_table.insert().values(name=name, role=role, password_hash=_hasher.hash(password),
                                           created_at=now, disabled=False).returning(user_table.c.id)
            ).scalar_one()
        return Account(new_id, name, role, False, now)

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        with self._write() as conn, conn.begin():
            done = conn.execute(user_table.update().where(user_table.c.name == name)
                                .values(password_hash=_hasher.hash(password))).rowcount
            if not done:
                raise AccountError(f"no user {name}")
            conn.execute(session_table.delete().where(session_table.c.user_id == self._id(conn, name)))

    def set_role(self, name: str, role: str) -> None:
        """Give NAME another role (its sessions and tokens follow at their next request)."""
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        with self._write() as conn, conn.begin():
            done = conn.execute(user_table.update().where(user_table.c.name == name)
                                .values(role=role)).rowcount
            if not done:
                raise AccountError(f"no user {name}")
        self.forget_tokens()

    def set_disabled(self, name: str, disabled: bool) -> None:
        with self._write() as conn, conn.begin():
            done = conn.execute(user_table.update().where(user_table.c.name == name)
                                .values(disabled=disabled)).rowcount
            if not done:
                raise AccountError(f"no user {name}")
            if disabled:
                conn.execute(session_table.delete().where(session_table.c.user_id == self._id(conn, name)))
        self.forget_tokens()

    @staticmethod
    def _id(conn: sa.Connection, name: str) -> int | None:
        return conn.execute(sa.select(user_table.c.id).where(user_table.c.name == name)).scalar()

    def users(self) -> list[Account]:
        with self._read() as conn:
            rows = conn.execute(sa.select(user_table).order_by(user_table.c.name)).all()
        return [_account(r) for r in rows]

    def user(self, name: str) -> Account | None:
        with self._read() as conn:
            row = conn.execute(sa.select(user_table).where(user_table.c.name == name)).first()
        return _account(row) if row else None

    def count_users(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(user_table)).scalar_one())

    def password_hash(self, name: str) -> str | None:
        with self._read() as conn:
            return conn.execute(sa.select(user_table.c.password_hash).where(user_table.c.name == name)).scalar()

    def authenticate(self, name: str, password: str) -> Account | None:
        """The enabled user with this name and password, else None (same work either way)."""
        with self._read() as conn:
            row = conn.execute(sa.select(user_table).where(user_table.c.name == name)).first()
        stored = row.password_hash if row else _DUMMY_HASH
        try:
            ok = _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None or row.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            with self._write() as conn, conn.begin():
                conn.execute(user_table.update().where(user_table.c.id == row.id)
                             .values(password_hash=_hasher.hash(password)))
        return _account(row)

    # -- login throttling ---------------------------------------------------------------------

    def _waits(self, conn: sa.Connection, name: str, address: str, now: datetime) -> timedelta | None:
        since = now - FAILURE_WINDOW
        f = login_failure_table
        waits = []
        for column, value in ((f.c.name, name[:NAME_MAX]), (f.c.address, address[:64])):
            times = conn.execute(
                sa.select(f.c.at).where(column == value, f.c.at > since).order_by(f.c.at.desc())
                .limit(MAX_FAILURES)
            ).scalars().all()
            if len(times) >= MAX_FAILURES:
                waits.append(times[-1] + FAILURE_WINDOW - now)
        return max(waits) if waits else None

    def throttled(self, name: str, address: str) -> timedelta | None:
        """How long until a login for `name` from `address` may be tried again (None: now)."""
        with self._read() as conn:
            return self._waits(conn, name, address, self.clock())

    def begin_attempt(self, name: str, address: str) -> tuple[timedelta | None, int | None]:
        """Check the throttle and, if a login may be tried, record the attempt as a failure in the
        same write transaction (so parallel attempts cannot all pass the check): (wait, None) when
        throttled, else (None, the attempt's id — pass it to `forget_attempt` when the login succeeds).
        SQLite serializes this with BEGIN IMMEDIATE; PostgreSQL with transaction-level advisory
        locks on the name and the address."""
        now = self.clock()
        name, address = name[:NAME_MAX], address[:64]
        with self._write() as conn, conn.begin():
            if self.engine.dialect.name == "postgresql":
                # one lock order (name, then address) for every transaction: no deadlock
                for key in (f"login-name:{name}", f"login-address:{address}"):
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))
            wait = self._waits(conn, name, address, now)
            if wait is not None:
                return wait, None
            attempt = conn.execute(
                login_failure_table.insert().values(name=name, address=address, at=now)
                .returning(login_failure_table.c.id)
            ).scalar_one()
            conn.execute(login_failure_table.delete().where(login_failure_table.c.at < now - timedelta(days=1)))
        return None, int(attempt)

    def forget_attempt(self, attempt: int) -> None:
        """A login attempt succeeded: it is not a failure."""
        with self._write() as conn, conn.begin():
            conn.execute(login_failure_table.delete().where(login_failure_table.c.id == attempt))

    def record_failure(self, name: str, address: str) -> None:
        now = self.clock()
        with self._write() as conn, conn.begin():
            conn.execute(login_failure_table.insert().values(name=name[:NAME_MAX], address=address[:64], at=now))
            conn.execute(login_failure_table.delete().where(login_failure_table.c.at < now - timedelta(days=1)))

    def clear_failures(self, name: str) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(login_failure_table.delete().where(login_failure_table.c.name == name[:NAME_MAX]))

    # -- sessions ----------------------------------------------------------------------------

    def create_session(self, account: Account, hours: float = SESSION_HOURS) -> tuple[str, str]:
        """A new session: (the cookie's secret, the session's CSRF token)."""
        secret = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self.clock()
        with self._write() as conn, conn.begin():
            conn.execute(session_table.insert().values(id_hash=digest(secret), user_id=account.id, csrf=csrf,
                                                       created_at=now, expires_at=now + timedelta(hours=hours)))
            conn.execute(session_table.delete().where(session_table.c.expires_at < now))
        return secret, csrf

    def session(self, secret: str) -> SessionInfo | None:
        now = self.clock()
        s, u = session_table, user_table
        with self._read() as conn:
            row = conn.execute(
                sa.select(u, s.c.csrf, s.c.expires_at).join(s, s.c.user_id == u.c.id)
                .where(s.c.id_hash == digest(secret))
            ).first()
        if row is None or row.expires_at <= now or row.disabled:
            return None
        return SessionInfo(_account(row), row.csrf, row.expires_at)

    def end_session(self, secret: str) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(session_table.delete().where(session_table.c.id_hash == digest(secret)))

    # -- API tokens --------------------------------------------------------------------------

    def create_token(self, user: str, name: str = "") -> tuple[int, str]:
        """A new bearer token for `user`: (its id, the secret — shown once, stored only hashed)."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        with self._write() as conn, conn.begin():
            user_id = self._id(conn, user)
            if user_id is None:
                raise AccountError(f"no user {user}: add it first with `pathway user add {user} --role ROLE`")
            token_id = conn.execute(
                token_table.insert().values(user_id=user_id, name=name[:100], token_hash=digest(secret),
                                            created_at=now).returning(token_table.c.id)
            ).scalar_one()
        return token_id, secret

    def revoke_token(self, token_id: int) -> bool:
        """Revoke a token; False if there is no such token or it was revoked already."""
        with self._write() as conn, conn.begin():
            revoked = bool(conn.execute(
                token_table.update().where(token_table.c.id == token_id, token_table.c.revoked_at.is_(None))
                .values(revoked_at=self.clock())
            ).rowcount)
        self.forget_tokens()
        return revoked

    def tokens(self) -> list[TokenInfo]:
        t, u = token_table, user_table
        with self._read() as conn:
            rows = conn.execute(sa.select(t, u.c.name.label("user")).join(u, u.c.id == t.c.user_id)
                                .order_by(t.c.id)).all()
        return [TokenInfo(r.id, r.user, r.name, r.created_at, r.revoked_at, r.last_used_at) for r in rows]

    def token_user(self, secret: str) -> Account | None:
        """The enabled user of an unrevoked token, else None."""
        hashed = digest(secret)
        cached = self._cached_token(hashed)
        if cached is not None:
            return cached
        t, u = token_table, user_table
        with self._read() as conn:
            row = conn.execute(
                sa.select(u).join(t, t.c.user_id == u.c.id)
                .where(t.c.token_hash == hashed, t.c.revoked_at.is_(None))
            ).first()
        if row is None or row.disabled:
            return None
        account = _account(row)
        if self.token_cache_seconds and self._monotonic is not None:
            with self._token_cache_lock:  # only found tokens: random guesses cannot fill it
                self._token_cache[hashed] = (account, self._monotonic() + self.token_cache_seconds)
                self._token_cache.move_to_end(hashed)
                while len(self._token_cache) > TOKEN_CACHE_SIZE:
                    self._token_cache.popitem(last=False)
        return account

    def cached_token_user(self, secret: str) -> Account | None:
        """The account `token_user` found for this token less than `token_cache_seconds` ago, if
        any (no database access: callers on an event loop try this first)."""
        return self._cached_token(digest(secret)) if self.token_cache_seconds else None

    def _cached_token(self, hashed: str) -> Account | None:
        if not self.token_cache_seconds or self._monotonic is None:
            return None
        with self._token_cache_lock:
            found = self._token_cache.get(hashed)
            if found is None:
                return None
            if found[1] <= self._monotonic():
                del self._token_cache[hashed]
                return None
            return found[0]

    def forget_tokens(self) -> None:
        """Drop the token cache (after a change to accounts or tokens)."""
        with self._token_cache_lock:
            self._token_cache.clear()

    def stored_token_hashes(self) -> list[str]:
        with self._read() as conn:
            return list(conn.execute(sa.select(token_table.c.token_hash)).scalars())


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short: at least {MIN_PASSWORD} characters")


def _account(row: sa.Row) -> Account:
    return Account(row.id, row.name, row.role, bool(row.disabled), row.created_at)
