"""The signature set: one directory, one layout, filled by the detection stages.

    rules/*.rules          Suricata rules
    yara/*.yar             YARA rules
    lists/<category>/*     domain / hosts / Adblock-style / URL lists; the folder name is the category
    lists/allow/*          allow-lists (never blocked)
    mail/*                 mail-filter lists
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class SignatureError(ValueError):
    """A signature set that must be refused; the running set stays in force."""


@dataclass(frozen=True)
class SignatureSet:
    root: Path
    rule_files: tuple[Path, ...]
    yara_files: tuple[Path, ...]
    lists: dict            # category -> tuple of files (allow-lists under "allow")
    mail_files: tuple[Path, ...]

    @classmethod
    def open(cls, root: str | Path, rule_files: list[str] | None = None) -> SignatureSet:
        """Open a set directory. `rule_files`, when given, replaces the set's own rules/*.rules."""
        root = Path(root)
        if not root.is_dir():
            raise SignatureError(f"{root}: signature set directory not found")
        if rule_files is not None:
            rules = []
            for f in rule_files:
                p = Path(f)
                if not p.is_file():
                    raise SignatureError(f"{p}: rule file not found")
                rules.append(p)
        else:
            rules = sorted((root / "rules").glob("*.rules"))
        lists = {}
        lists_dir = root / "lists"
        if lists_dir.is_dir():
            for cat in sorted(d for d in lists_dir.iterdir() if d.is_dir()):
                files = tuple(sorted(f for f in cat.iterdir() if f.is_file() and not f.name.startswith(".")))
                if files:
                    lists[cat.name] = files
        return cls(
            root=root,
            rule_files=tuple(rules),
            yara_files=tuple(sorted((root / "yara").glob("*.yar")) + sorted((root / "yara").glob("*.yara"))),
            lists=lists,
            mail_files=tuple(sorted(f for f in (root / "mail").glob("*") if f.is_file()
                                    and not f.name.startswith("."))),
        )
