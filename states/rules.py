"""Rules: a guard's stable code, severity, message and clinical source (spec section 4).

A refusal always says why and what to do instead, and cites where the rule comes from
(clinical/rules.md). Each stage module declares its rules as `Rule` constants beside the guards
that use them, and lists them in its `Stage`; `states.definition` collects them into `RULES` and
the `RuleCode` enum, checking that every code is unique, upper-case and sourced. The HTTP API, the
CLI and the web page all show the same text.

    MDT_QUORUM = Rule("MDT_QUORUM", Severity.block, "when it fires", "message {missing}", "source")
    MDT_QUORUM.reason(missing="radiologist")      # -> Reason(code, severity, message, source)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from states.vocabulary import Severity


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule that fired on one event."""

    code: str
    severity: Severity
    message: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    severity: Severity
    #: What the rule checks (documentation; shown by the pathway definition).
    when: str
    #: A one-line message template: why, and what to do instead. Filled with `str.format`.
    message: str
    #: The clinical source, with its key from clinical/rules.md.
    source: str
    #: A block that stays a block on a recorded fact (an earlier fact is missing).
    always_block: bool = False

    def reason(self, *, fact: bool = False, severity: Severity | None = None, **values: Any) -> Reason:
        """This rule rendered for one event.

        On a recorded fact (`fact=True`) a `block` becomes `confirm` — what happened must be
        recordable, the deviation justified in an override — unless the rule is `always_block`.
        """
        level = severity or self.severity
        if fact and level is Severity.block and not self.always_block:
            level = Severity.confirm
        return Reason(self.code, level, self.message.format(**values), self.source)

    def problems(self) -> list[str]:
        """What is wrong with the rule's declaration (empty when nothing is)."""
        out = []
        if not self.code or not self.code.replace("_", "").isalnum() or not self.code.isupper():
            out.append(f"rule {self.code!r}: the code must be UPPER_CASE letters, digits and '_'")
        for name in ("when", "message", "source"):
            if not getattr(self, name).strip():
                out.append(f"rule {self.code}: needs a {name}")
        return out
