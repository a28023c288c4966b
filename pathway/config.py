"""Configuration from the environment and files: database URL, policy file.

| setting | flag | environment | default |
|---|---|---|---|
| database URL | --db | PATHWAY_DB | sqlite:///pathway.db |
| policy file (TOML) | --policy | PATHWAY_POLICY | built-in defaults (spec section 5) |
| pinned clock | - | PATHWAY_NOW | the system clock |
"""

from __future__ import annotations

import logging
import os
import sys
import tomllib
from pathlib import Path

from pathway.errors import ConfigurationError
from states.policy import DEFAULT_POLICY, Policy, PolicyError

DEFAULT_DB = "sqlite:///pathway.db"
#: Set by `pathway serve --workers N -v` for its worker processes (which configure their own logging).
VERBOSE_ENV = "PATHWAY_LOG_VERBOSE"


def database_url(flag: str | None = None) -> str:
    return flag or os.environ.get("PATHWAY_DB") or DEFAULT_DB


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """The policy from `path`, else from PATHWAY_POLICY, else the defaults."""
    chosen = path if path is not None else os.environ.get("PATHWAY_POLICY") or None
    if chosen is None:
        return DEFAULT_POLICY
    file = Path(chosen)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"policy file {file} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read policy file {file}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"policy file {file} is not valid TOML: {exc}") from exc
    try:
        return Policy.from_mapping(data, origin=str(file))
    except PolicyError as exc:
        raise ConfigurationError(str(exc)) from exc


#: Third-party loggers that report routine work at INFO: `transitions` a line per fired transition
#: (most of a busy server's log), Alembic its migration context on every start. WARNING unless -v.
CHATTY_LOGGERS = ("transitions", "alembic")


def configure_logging(verbose: bool = False) -> None:
    """Logging of the long-running commands (`run`, `serve`): timestamped records on stderr, the
    project's own loggers (`pathway.*`) at INFO; `transitions` and Alembic at WARNING unless
    `verbose`; APScheduler's notices ("skipped: maximum number of running instances") at ERROR.
    (Alembic's env.py configures no logging: this is the only set-up.)"""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
