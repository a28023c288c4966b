"""The demo and the synthetic cohort behind it, apart from the runtime modules: the engine, the
CLI and the web app never import them.

    pathway.demo.cohort   synthetic patients walking realistic routes through the pathway, for
                          demos and benchmarks (python -m pathway.demo.cohort --help)
    pathway.demo.run      the demo: a fresh SQLite database with patients at every stage, and
                          the coordinator's worklist (python -m pathway.demo; scripts/demo)

`scripts/serve` records `demo_events(...)` into a new database; `bench/engine.py` writes a large
cohort with `write_interleaved`. The names below are imported from their module on first use, so
that `python -m pathway.demo.cohort` does not import the module it is about to run.
"""

from __future__ import annotations

import importlib
from typing import Any

_COHORT = ("REFERRAL_SPAN_DAYS", "ROUTES", "CohortError", "dumps", "generate", "generate_covering",
           "generate_patient", "patient_id", "patient_rng", "walk_patient", "write_interleaved")
_HOMES = {"demo_events": "run", "main": "run", **{name: "cohort" for name in _COHORT}}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
