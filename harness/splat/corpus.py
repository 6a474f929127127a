"""Reader for crash-log corpora in the syzkaller test-data format (pure).

Each case: header lines (TITLE/ALT/TYPE/FRAME/CORRUPTED/...), a blank line, the raw console log,
and optionally a blank line, ``REPORT:`` and the expected report text.  Used by the corpus
oracle tests and by bench/splat_corpus.py.
"""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

TUNE, MEASURE = "tune", "measure"

HEADER_KEYS = (
    "TITLE",
    "ALT",
    "TYPE",
    "FRAME",
    "CORRUPTED",
    "SUPPRESSED",
    "START",
    "END",
    "EXECUTOR",
    "PANICKED",
)


@dataclass
class Case:
    name: str
    log: str
    titles: list[str] = field(default_factory=list)  # TITLE lines: expected crashes in order
    alts: list[str] = field(default_factory=list)
    kind: str | None = None
    frame: str | None = None
    corrupted: bool = False
    suppressed: bool = False

    @property
    def has_crash(self) -> bool:
        return bool(self.titles)


def parse_case(name: str, data: str) -> Case:
    lines = data.split("\n")
    try:
        blank = lines.index("")
    except ValueError:
        blank = -1
    header = lines[:blank] if blank >= 0 else []
    if not header or any(not (h.startswith("#") or h.split(":")[0] in HEADER_KEYS) for h in header):
        header, blank = [], -1  # no header block: the whole file is the log
    log = "\n".join(lines[blank + 1 :])
    marker = log.find("\nREPORT:\n")
    if marker >= 0:
        log = log[:marker]
    case = Case(name, log)
    for h in header:
        key, _, value = h.partition(":")
        value = value.strip()
        if key == "TITLE" and value:  # an empty TITLE means no report is expected
            case.titles.append(value)
        elif key == "ALT":
            case.alts.append(value)
        elif key == "TYPE":
            case.kind = value
        elif key == "FRAME":
            case.frame = value
        elif key == "CORRUPTED":
            case.corrupted = value == "Y"
        elif key == "SUPPRESSED":
            case.suppressed = value == "Y"
    return case


def load(directory: Path) -> list[Case]:
    """Every case of a corpus directory: files named by number, or *.log files."""
    cases = []
    for path in sorted(directory.iterdir(), key=lambda p: (len(p.name), p.name)):
        if path.name.isdigit() or path.suffix == ".log":
            cases.append(parse_case(path.name, path.read_bytes().decode("utf-8", "replace")))
    return cases


def half(name: str) -> str:
    """Which half of a corpus a case belongs to, fixed by a hash of its file name: rules are
    tuned on ``tune`` only; ``measure`` is only ever measured (never read case by case), so the
    gap between the two says how far the rules were fitted to cases."""
    return TUNE if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else MEASURE
