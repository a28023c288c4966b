"""`verify`: replay a patient's accepted history and compare it with what is stored."""

from __future__ import annotations

from typing import Any

from pathway.errors import UnknownPatient
from pathway.recording import recorded
from states.facts import Snapshot, StaleSnapshot
from states.pathway import replay
from states.plan import project


class Verifying:
    """The engine's integrity check (a part of `Engine`)."""

    def verify(self, patient: str) -> list[str]:
        """Replay the patient's accepted history: differences from the stored snapshot and pending
        reminders (an empty list when they agree exactly)."""
        with self._reading() as tx:
            stored = tx.patient(patient)
            if stored is None:
                raise UnknownPatient(patient)
            events = tx.events(patient, accepted_only=True)
            reminders = tx.reminders(patient)
        problems = []
        try:
            replayed = replay([recorded(e) for e in events], self.policy)
        except ValueError as exc:  # a stored event the contract refuses now, a void with nothing to undo
            return [f"its accepted history does not replay: {exc}"]
        if replayed is None:
            return [f"version {stored.version} stored but no accepted event to replay"]
        try:
            kept = Snapshot.from_dict(stored.snapshot)
        except StaleSnapshot:
            return [f"its stored snapshot is of an older shape ({stored.snapshot.get('schema', 1)}): "
                    "run `pathway db upgrade`"]
        if replayed != kept:
            a, b = replayed.__dict__, kept.__dict__
            problems.append(f"snapshot differs in {', '.join(sorted(k for k in a if a[k] != b[k]))}")
        if str(replayed.state) != stored.state:
            problems.append(f"state {stored.state} stored, {replayed.state} replayed")
        if stored.version != len(events):
            problems.append(f"version {stored.version} but {len(events)} accepted events")
        want = {(p.key, p.kind, p.due_on, p.notify_at) for p in project(replayed, self.policy)}
        have = {(r.key, r.kind, r.due_on, r.notify_at) for r in reminders}
        if want != have:
            def listed(items: set[tuple[Any, ...]]) -> str:
                return "; ".join(f"{key} due {due.isoformat()}" for key, _kind, due, _at in sorted(items)) or "none"

            problems.append(
                f"pending reminders differ from the replay under the current policy: stored only: "
                f"{listed(have - want)}; replay only: {listed(want - have)}"
            )
        return problems
