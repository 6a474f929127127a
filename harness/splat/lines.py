"""Console lines with their printk prefixes separated out (pure).

A console line may carry a timestamp (``[   12.345678]``), a printk caller context
(``[T123]`` task or ``[C1]`` CPU, with CONFIG_PRINTK_CALLER), a syslog level (``<4>``), and
carriage returns from the serial console.  Rules match the text without any of that; the
context keeps interleaved reports from different tasks apart.
"""

import itertools
import re
from dataclasses import dataclass

_PREFIX = re.compile(
    r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?"  # syz-manager / log collector stamp
    r"(?:<\d{1,2}>)?"
    r"(?:\[\s*(?P<ts>\d+\.\d+)\])?"
    r"(?:\[\s*(?P<ctx>[TC]\s*\d+)\])?"
    r"(?: ?\[\s*(?P<ctx2>[TC]\d+)\])?"
)


@dataclass(frozen=True)
class Line:
    index: int
    raw: str
    text: str  # without timestamp/context; leading indentation kept (frames are indented)
    ctx: str | None
    stamped: bool  # carried a printk timestamp: it came from the kernel


_LATE_STAMP = re.compile(r"\[\s*\d+\.\d{6}\](?:\[\s*[TC]\s*\d+\])?")


def split(text: str, start_index: int = 0) -> list[Line]:
    """Lines of ``text``; a raw line holding several printk records becomes several Lines."""
    out = []
    for i, raw in enumerate(text.split("\n")):
        raw = raw.replace("\r", "")
        cuts = [m.start() for m in _LATE_STAMP.finditer(raw) if m.start() > 0]
        if not _LATE_STAMP.match(raw) and cuts:
            # "syzkaller login: [   35.18] BUG: ..." - console output glued to a kernel line
            raw, cuts = raw[cuts[0] :], [c - cuts[0] for c in cuts[1:]]
        bounds = [0, *cuts, len(raw)]
        for a, b in itertools.pairwise(bounds):
            out.append(_line(start_index + i, raw[a:b]))
    return out


def _line(index: int, raw: str) -> Line:
    m = _PREFIX.match(raw)
    assert m is not None
    rest = raw[m.end() :]
    ctx = m.group("ctx") or m.group("ctx2")
    if m.group("ts") is not None and rest.startswith(" "):
        rest = rest[1:]
    return Line(index, raw, rest, ctx.replace(" ", "") if ctx else None, m.group("ts") is not None)
