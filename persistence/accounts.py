"""Accounts of the web app and the HTTP API: users, API tokens, login sessions, login throttling.

All the SQL of accounts lives here (SQLAlchemy Core over the repository's engine; SQLite and
PostgreSQL). Secrets are never stored: passwords as argon2id hashes, API tokens, session ids and
device cookies as SHA-256 hex digests of random secrets (a token is shown once, when it is created).

Login throttling (issue 8) keeps guessing bounded without letting anyone lock a user out. Every
attempt is recorded as a failure before its password is checked (and forgotten if it succeeds);
failures are counted per key in a sliding window (FAILURE_WINDOW), and an attempt waits while a
key it counts against has reached its limit, until the oldest failure counted there leaves the
window. The keys of an attempt for NAME:

- from a browser known for NAME (its `pathway_device` cookie was set at a login as NAME):
  (NAME, that browser) only. Nobody else's failures lock a user out of their own browser.
- from any other browser: (NAME, address), NAME from unknown browsers anywhere (distributed
  guessing), and the address across names from unknown browsers (password spraying).

An admin's unlock (`unlock_user`, `unlock_address`) forgets the failures at once.
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
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects import postgresql, sqlite

from persistence import db
from persistence.tables import known_device_table, login_failure_table, session_table, token_table, user_table
from states.errors import PathwayError

ROLES = ("viewer", "coordinator", "admin")
#: Tokens whose accounts `token_user` remembers at most (see Accounts.token_cache_seconds).
TOKEN_CACHE_SIZE = 1000
MIN_PASSWORD = 10
NAME_MAX = 64
TOKEN_PREFIX = "pwt_"
SESSION_HOURS = 12
#: Failed logins are counted over this sliding window (the longest a throttled login waits).
FAILURE_WINDOW = timedelta(minutes=15)
#: Per name on a browser known for it: room for a user's typos; an attacker would need the cookie.
KNOWN_DEVICE_FAILURES = 10
#: Per name and address from unknown browsers: one guesser at one address gets 5 guesses a window.
PAIR_FAILURES = 5
#: Per name from unknown browsers anywhere: caps distributed guessing at 20 a window (1,920 a day).
NAME_FAILURES = 20
#: Per address across names from unknown browsers: stops spraying; well above a ward's typos.
ADDRESS_FAILURES = 50
#: A browser stays known for a user this long after their last login on it (the cookie's max-age).
DEVICE_LIFETIME = timedelta(days=365)

_hasher = PasswordHasher()
# a hash to verify against when the user does not exist, so both cases take the same time
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(PathwayError, ValueError):
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
        ok: bool
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

    @staticmethod
    def _known_device(conn: sa.Connection, name: str, device: str | None, now: datetime) -> str | None:
        """The hash of the device cookie `device` if that browser is known for `name`, else None."""
        if not device:
            return None
        d, u = known_device_table, user_table
        device_hash = digest(device)
        known = conn.execute(
            sa.select(d.c.device_hash).join(u, u.c.id == d.c.user_id)
            .where(d.c.device_hash == device_hash, u.c.name == name, d.c.last_login_at > now - DEVICE_LIFETIME)
        ).first()
        return device_hash if known else None

    @staticmethod
    def _waits(conn: sa.Connection, name: str, address: str, device_hash: str | None,
               now: datetime) -> timedelta | None:
        """How long the attempt's keys make it wait (None: not at all)."""
        f = login_failure_table
        keys: list[tuple[list[sa.ColumnElement[bool]], int]]
        if device_hash is not None:
            keys = [([f.c.name == name, f.c.device == device_hash], KNOWN_DEVICE_FAILURES)]
        else:
            unknown = f.c.device.is_(None)
            keys = [([f.c.name == name, unknown, f.c.address == address], PAIR_FAILURES),
                    ([f.c.name == name, unknown], NAME_FAILURES),
                    ([f.c.address == address, unknown], ADDRESS_FAILURES)]
        waits = []
        for conditions, limit in keys:
            times = conn.execute(
                sa.select(f.c.at).where(*conditions, f.c.at > now - FAILURE_WINDOW).order_by(f.c.at.desc())
                .limit(limit)
            ).scalars().all()
            if len(times) >= limit:
                waits.append(times[-1] + FAILURE_WINDOW - now)
        return max(waits) if waits else None

    def throttled(self, name: str, address: str, device: str | None = None) -> timedelta | None:
        """How long until a login for `name` from `address`, on the browser whose device cookie is
        `device`, may be tried again (None: now)."""
        now = self.clock()
        name, address = name[:NAME_MAX], address[:64]
        with self._read() as conn:
            return self._waits(conn, name, address, self._known_device(conn, name, device, now), now)

    def begin_attempt(self, name: str, address: str,
                      device: str | None = None) -> tuple[timedelta | None, int | None]:
        """Check the throttle and, if a login may be tried, record the attempt as a failure in the
        same write transaction (so parallel attempts cannot all pass the check): (wait, None) when
        throttled, else (None, the attempt's id — pass it to `forget_attempt` when the login succeeds).
        `device` is the browser's device cookie (None: it has none). SQLite serializes this with
        BEGIN IMMEDIATE; PostgreSQL with transaction-level advisory locks on the name and, from an
        unknown browser, the address (every key the attempt counts against)."""
        now = self.clock()
        name, address = name[:NAME_MAX], address[:64]
        with self._write() as conn, conn.begin():
            device_hash = self._known_device(conn, name, device, now)
            if self.engine.dialect.name == "postgresql":
                # one lock order (name, then address) for every transaction: no deadlock. The name's
                # lock covers its keys (name, address) and (name, browser)
                keys = [f"login-name:{name}"] + ([] if device_hash else [f"login-address:{address}"])
                for key in keys:
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))
            wait = self._waits(conn, name, address, device_hash, now)
            if wait is not None:
                return wait, None
            attempt = conn.execute(
                login_failure_table.insert().values(name=name, address=address, device=device_hash, at=now)
                .returning(login_failure_table.c.id)
            ).scalar_one()
            conn.execute(login_failure_table.delete().where(login_failure_table.c.at < now - timedelta(days=1)))
        return None, int(attempt)

    def forget_attempt(self, attempt: int) -> None:
        """A login attempt succeeded: it is not a failure, nor are the earlier failures of its own key
        (the same name on the same known browser, or from an unknown browser at the same address)."""
        f = login_failure_table
        with self._write() as conn, conn.begin():
            row = conn.execute(sa.select(f.c.name, f.c.address, f.c.device).where(f.c.id == attempt)).first()
            if row is None:
                return
            same_key = [f.c.device == row.device] if row.device else [f.c.device.is_(None), f.c.address == row.address]
            conn.execute(f.delete().where(f.c.name == row.name, *same_key))

    def remember_device(self, account: Account, device: str | None) -> str:
        """`account` has just logged in on the browser whose device cookie is `device` (None: it has
        none): that browser is known for the account from now on. Returns the cookie's secret to
        set: `device` if it was issued here, else a new one (a cookie not issued here is not trusted)."""
        now = self.clock()
        d = known_device_table
        with self._write() as conn, conn.begin():
            issued = device is not None and conn.execute(
                sa.select(d.c.device_hash).where(d.c.device_hash == digest(device)).limit(1)).first() is not None
            if not issued or device is None:  # (issued implies a device: for the type checker)
                device = secrets.token_urlsafe(32)
            insert = (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(d)
            conn.execute(
                insert.values(device_hash=digest(device), user_id=account.id, first_seen=now, last_login_at=now)
                .on_conflict_do_update(index_elements=[d.c.device_hash, d.c.user_id],
                                       set_={"last_login_at": insert.excluded.last_login_at})
            )
            conn.execute(d.delete().where(d.c.last_login_at < now - DEVICE_LIFETIME))
        return device

    def unlock_user(self, name: str) -> int:
        """An admin's unlock: forget every failed login for user `name` (on every browser, from every
        address). Returns how many were forgotten; AccountError if there is no such user."""
        f = login_failure_table
        with self._write() as conn, conn.begin():
            if self._id(conn, name) is None:
                raise AccountError(f"no user {name}")
            return int(conn.execute(f.delete().where(f.c.name == name[:NAME_MAX])).rowcount)

    def unlock_address(self, address: str) -> int:
        """An admin's unlock: forget every failed login from `address`. Returns how many."""
        f = login_failure_table
        with self._write() as conn, conn.begin():
            return int(conn.execute(f.delete().where(f.c.address == address.strip()[:64])).rowcount)

    def recent_failures(self) -> dict[str, int]:
        """Failed logins in the window, by user name (for the admin page)."""
        f = login_failure_table
        with self._read() as conn:
            rows = conn.execute(sa.select(f.c.name, sa.func.count()).where(f.c.at > self.clock() - FAILURE_WINDOW)
                                .group_by(f.c.name)).all()
        return {name: int(count) for name, count in rows}

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


def _account(row: sa.Row[Any]) -> Account:
    return Account(row.id, row.name, row.role, bool(row.disabled), row.created_at)
