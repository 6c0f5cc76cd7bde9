"""The `requires` keyword (Suricata 7.0.3 and later): a rule names the engine version and features it needs,
and an engine that lacks them skips the rule instead of failing on keywords it does not know.

    requires: version >= 7.0.3
    requires: feature geoip, version >= 7 < 8
    requires: version >= 7.0.4 < 8 | >= 8.0.3        # "|": either range

`unmet(value)` is None when the rule may load, else the reason it does not (the loader reports the rule as
not loaded with that reason, so `gateway rules check` lists it). A malformed value is a RuleError.
The check runs before any other keyword of the rule is looked at, as in Suricata, so a rule for a newer
engine is reported by its requirement rather than by the first keyword we do not know.
"""
from __future__ import annotations

import re

from .model import RuleError

# The Suricata release whose rule language the engine follows, for `requires: version ...`: the 7.0 series
# from 7.0.3, the first with `requires` (keywords of that language we lack reject the rule one by one).
ENGINE_VERSION = (7, 0, 3)
# Suricata feature names (`requires: feature NAME`) the engine provides: none of the optional ones
# (geoip, output::file-store, ...).
FEATURES: frozenset[str] = frozenset()

_OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b,
        "=": lambda a, b: a == b, "==": lambda a, b: a == b}
_TERM = re.compile(r"\s*(>=|<=|==|=|>|<)\s*(\d+(?:\.\d+){0,2})\s*")
_ENGINE_TEXT = ".".join(map(str, ENGINE_VERSION))


def _version(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def _range_holds(text: str, value: str) -> bool:
    """One alternative ("'>= 7.0.4 < 8'"): every comparison must hold."""
    pos, terms = 0, 0
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None or m.end() == pos:
            raise RuleError(f"requires: bad version expression {value!r}")
        if not _OPS[m.group(1)](ENGINE_VERSION, _version(m.group(2))):
            return False
        pos, terms = m.end(), terms + 1
    if not terms:
        raise RuleError(f"requires: bad version expression {value!r}")
    return True


def unmet(value: str | None) -> str | None:
    if not value or not value.strip():
        raise RuleError("requires: needs a value")
    for item in value.split(","):
        item = item.strip()
        key, _, rest = item.partition(" ")
        rest = rest.strip()
        if key == "feature":
            if not rest or " " in rest:
                raise RuleError(f"requires: bad feature {item!r}")
            if rest not in FEATURES:
                return f"requires: feature {rest} (not provided)"
        elif key == "version":
            if not any(_range_holds(alt, value) for alt in rest.split("|")):
                return f"requires: version {rest} (the engine follows Suricata {_ENGINE_TEXT})"
        else:
            raise RuleError(f"requires: unknown requirement {key!r} (feature or version)")
    return None
