"""classification.config -> {classtype: Classification(name, description, priority)}.

Lines look like `config classification: trojan-activity,A Network Trojan was detected, 1`. A rule's
`classtype` must name one of them (else the rule is rejected); its priority is the rule's default priority.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_CLASSIFICATION = Path(__file__).resolve().parent.parent.parent / "signatures" / "classification.config"


class ClassificationError(ValueError):
    """A classification file that cannot be used; the message names file, line and reason."""


@dataclass(frozen=True)
class Classification:
    name: str
    description: str
    priority: int


def parse_classifications(text: str, where: str = "<text>") -> dict[str, Classification]:
    out: dict[str, Classification] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, sep, rest = line.partition(":")
        if not sep or head.strip() != "config classification":
            raise ClassificationError(f"{where}:{lineno}: expected 'config classification: name,description,"
                                      f"priority'")
        name, _, rest = rest.partition(",")
        description, sep, prio_s = rest.rpartition(",")
        name, description, prio_s = name.strip().lower(), description.strip(), prio_s.strip()
        if not sep or not name:
            raise ClassificationError(f"{where}:{lineno}: expected name,description,priority")
        try:
            priority = int(prio_s)
        except ValueError:
            raise ClassificationError(f"{where}:{lineno}: priority is not a number: {prio_s!r}") from None
        if not 1 <= priority <= 255:
            raise ClassificationError(f"{where}:{lineno}: priority must be 1..255, got {priority}")
        out[name] = Classification(name, description, priority)
    return out


def load_classifications(path: str | Path | None = None) -> dict[str, Classification]:
    path = Path(path) if path else DEFAULT_CLASSIFICATION
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ClassificationError(f"{path}: cannot read classification file: {e.strerror or e}") from None
    return parse_classifications(text, str(path))
