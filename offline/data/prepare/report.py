"""What one prepare run read, kept and skipped (by reason), printed at the end and saved as prepare.json.

Real files are never fully clean, so a bad record is counted under a reason and the run goes on; the
summary is how a user notices that, say, 3 % of a file did not parse.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPORT_FILE = "prepare.json"


@dataclass
class Section:
    """Counts for one input (a file, or one stage such as de-duplication): read = kept + skipped."""

    read: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] += count

    def to_json(self) -> dict:
        return {"read": self.read, "kept": self.kept, "skipped": dict(sorted(self.skipped.items()))}


@dataclass
class Report:
    dataset: str
    source: str
    sections: dict[str, Section] = field(default_factory=dict)
    output: dict[str, object] = field(default_factory=dict)  # what was written: counts, paths
    notes: list[str] = field(default_factory=list)  # decisions a user should know about

    def section(self, name: str) -> Section:
        return self.sections.setdefault(name, Section())

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "source": self.source,
            "sections": {name: s.to_json() for name, s in self.sections.items()},
            "output": self.output,
            "notes": self.notes,
        }

    def write(self, folder: Path) -> Path:
        path = folder / REPORT_FILE
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
        return path

    def summary(self) -> str:
        lines = [f"prepare {self.dataset}: {self.source}"]
        for name, s in self.sections.items():
            skipped = sum(s.skipped.values())
            lines.append(f"  {name}: read {s.read:,}, kept {s.kept:,}, skipped {skipped:,}")
            for reason, count in sorted(s.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"      {count:>9,}  {reason}")
        for key, value in self.output.items():
            lines.append(f"  {key}: {value:,}" if isinstance(value, int) else f"  {key}: {value}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
