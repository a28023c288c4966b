"""The root of the error tree (drawn in `pathway.errors`, which re-exports it as `pathway.PathwayError`).

It lives in the bottom layer so that every exception class of `states/`, `persistence/` and
`pathway/` derives from it without a layer pointing upwards (`states/` imports neither of the
others; `persistence/` imports `states/`). The lower layers' errors are still translated by the
engine into the ones its API documents: these classes are never what `Engine` raises.
"""

from __future__ import annotations


class PathwayError(Exception):
    """Root of every error raised on purpose by the engine and the layers beneath it."""
