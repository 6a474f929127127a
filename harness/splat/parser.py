"""Console log → splats, driven by the rules table in rules.toml (pure).

The parser finds report starts, decides where each report ends (an end marker, the next report,
or a line limit), keeps the lines of the reporting context only, pulls in the dump_page lines
printed just before a BUG/WARNING, and builds the title from the first matching rule case.
"""

import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from re import Match, Pattern
from typing import Any

from harness.datafile import load_toml, reject_unknown
from harness.errors import UserError
from harness.splat import frames as fr
from harness.splat.lines import Line
from harness.splat.model import Splat

RULES_FILE = Path(__file__).with_name("rules.toml")
MAX_REPORT_LINES = 400
LOOKBACK_LINES = 40  # how far before a report its dump_page / cut-here lines may start
CORRUPTED = "corrupted"
BEFORE_CASE_LINES = 6  # how far before a start a case's `before` line may be
CONTINUATION = 20  # lines after a start within which a `continues` start belongs to it
PANIC_AFTER_REPORT = 60  # x86 repeats RIP and registers after "end trace", then panics

_LOCK_AT = re.compile(r", at: (?:\[<[0-9a-f]+>\]\s*)?" + fr.FUNC + r"(?:\+0x|\s)")
_SCHEDULER = re.compile(r"(?:__)?schedule|preempt_schedule|_cond_resched")
_OFFSET_FUNC = re.compile(fr.FUNC + r"\+0x")
_PLACEHOLDER = re.compile(r"( in )?\{([\w|]+)(\??)\}")  # {a|b}: a, else b; {a?}: optional


@dataclass(frozen=True)
class Case:
    when: Pattern[str] | None  # searched in the report
    before: Pattern[str] | None  # searched in the lines just before the report's start
    title: str
    kind: str | None
    stack: bool | None = None  # overrides the rule's ``stack`` when this case applies
    corrupted: bool = False  # this form is only ever what is left of a lost report


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    start: Pattern[str]
    title: str
    cases: tuple[Case, ...] = ()
    skip: tuple[Pattern[str], ...] = ()
    frame_sources: tuple[str, ...] = ("stack",)
    requires_before: Pattern[str] | None = None
    fatal: bool = False
    panic: bool = False
    func_skip: bool = False
    func_needs_stack: bool = False  # a {func} from the start line needs a stack behind it
    continues: bool = False  # right after another report's start, this line is part of it
    prefer: Pattern[str] | None = None  # a frame matching this wins over anchors and skips
    headed_trace: bool = True  # only frames after a "Call Trace:"-style header count
    trace_required: bool = False  # ... and without a header there are no frames
    anchors: Pattern[str] | None = None  # pick the frame just inside the innermost anchor
    frames_after: Pattern[str] | None = None  # consider only frames after the first match
    stamped: bool = False  # only kernel lines (with a printk timestamp) start this report
    # Whether an intact report prints a stack trace (None: when its frames follow a header).
    stack: bool | None = None
    corrupted: bool = False  # this form is only ever what is left of a lost report
    not_first: bool = False  # only when the log had output before (a reboot, not the boot)
    suppress: tuple[Pattern[str], ...] = ()  # lines that look like a start but are not


@dataclass(frozen=True)
class Rules:
    reports: tuple[Rule, ...]
    skip: tuple[Pattern[str], ...]  # never guilty
    library: tuple[Pattern[str], ...]  # not guilty when the title takes a stack frame
    machinery: tuple[Pattern[str], ...] = ()  # not guilty unless nothing else is left
    any_start: Pattern[str] = field(default=re.compile("$^"))
    any_floating: Pattern[str] | None = None
    canonical: tuple[tuple[Pattern[str], str], ...] = ()
    end_markers: Pattern[str] = field(default=re.compile("$^"))  # a report ends here
    before_lines: Pattern[str] = field(default=re.compile("$^"))  # may precede a start
    info_with_stack: Pattern[str] = field(default=re.compile("$^"))  # not a bug, own stack


TOP_KEYS = (
    "report",
    "skip",
    "library",
    "machinery",
    "roles",
    "anchors",
    "canonical",
    "boundaries",
)
ROLE_KEYS = ("use", "why", "fragments", "patterns")
ROLE_USES = ("skip", "library", "machinery")
BOUNDARY_KEYS = ("end", "before", "info_with_stack")
CASE_KEYS = ("when", "before", "title", "kind", "stack", "corrupted")
REPORT_KEYS = (
    "anchors",
    "cases",
    "continues",
    "corrupted",
    "fatal",
    "frame",
    "frames_after",
    "func_needs_stack",
    "func_skip",
    "headed_trace",
    "kind",
    "name",
    "not_first",
    "panic",
    "prefer",
    "requires_before",
    "skip",
    "stack",
    "stamped",
    "start",
    "suppress",
    "title",
    "trace_required",
)


@cache
def load_rules(path: Path = RULES_FILE) -> Rules:
    """The rules table; one-line UserErrors for unknown keys, missing ones and bad regexes
    (a misspelt flag must not be ignored: it would silently change every title)."""
    data = load_toml(path, "splat rules")
    reject_unknown(data, TOP_KEYS, f"splat rules {path}")
    boundaries = data.get("boundaries", {})
    reject_unknown(boundaries, BOUNDARY_KEYS, f"splat rules {path} [boundaries]")
    reports = []
    for r in data.get("report", []):
        where = f"splat rules {path}: report {r.get('name', '?')!r}"
        reject_unknown(r, REPORT_KEYS, where)
        for c in r.get("cases", []):
            reject_unknown(c, CASE_KEYS, f"{where}: case")
        try:
            reports.append(_rule(r, data))
        except KeyError as exc:
            raise UserError(f"{where}: missing key {exc}") from None
        except re.error as exc:
            raise UserError(f"{where}: bad regex {exc.pattern!r}: {exc}") from None
    try:
        # One cheap pre-check for every line: anchored starts with match(), the rest with
        # search().
        unnamed = [re.sub(r"\(\?P<\w+>", "(?:", r.start.pattern) for r in reports]
        anchored = [p[1:] for p in unnamed if p.startswith("^")]
        floating = [p for p in unnamed if not p.startswith("^")]
        any_start = re.compile("|".join(f"(?:{p})" for p in anchored))
        any_floating = re.compile("|".join(f"(?:{p})" for p in floating)) if floating else None
        canonical = tuple((re.compile(k), v) for k, v in data.get("canonical", {}).items())
        lists = {use: [re.compile(p) for p in data.get(use, [])] for use in ROLE_USES}
        for use, pattern in _roles(data.get("roles", {}), path):
            lists[use].append(pattern)
        return Rules(
            tuple(reports),
            tuple(lists["skip"]),
            tuple(lists["library"]),
            tuple(lists["machinery"]),
            any_start,
            any_floating,
            canonical,
            re.compile(boundaries.get("end", "$^")),
            re.compile(boundaries.get("before", "$^")),
            re.compile(boundaries.get("info_with_stack", "$^")),
        )
    except re.error as exc:
        raise UserError(f"splat rules {path}: bad regex {exc.pattern!r}: {exc}") from None


def _roles(roles: dict[str, Any], path: Path) -> list[tuple[str, Pattern[str]]]:
    """Frames grouped by the role they play (allocator, lock, string helper, ...): each role
    says how its frames are treated (``use``) and names them by ``fragments`` (a frame whose
    name contains one plays the role, whatever the subsystem calls it) or ``patterns``."""
    out = []
    for name, role in roles.items():
        where = f"splat rules {path} [roles.{name}]"
        reject_unknown(role, ROLE_KEYS, where)
        use = role.get("use")
        if use not in ROLE_USES:
            raise UserError(f"{where}: use must be one of {', '.join(ROLE_USES)}, not {use!r}")
        parts = [re.escape(f) for f in role.get("fragments", [])] + list(role.get("patterns", []))
        if not parts:
            raise UserError(f"{where}: no fragments or patterns")
        out.append((use, re.compile("|".join(f"(?:{p})" for p in parts))))
    return out


def _rule(r: dict[str, Any], data: dict[str, Any]) -> Rule:
    return Rule(
        name=r["name"],
        kind=r["kind"],
        start=re.compile(r["start"]),
        title=r["title"],
        cases=tuple(
            Case(
                re.compile(c["when"], re.M) if "when" in c else None,
                re.compile(c["before"]) if "before" in c else None,
                c["title"],
                c.get("kind"),
                c.get("stack"),
                c.get("corrupted", False),
            )
            for c in r.get("cases", [])
        ),
        skip=tuple(re.compile(p) for p in r.get("skip", [])),
        frame_sources=tuple(r.get("frame", "stack").split(",")),
        requires_before=re.compile(r["requires_before"]) if "requires_before" in r else None,
        fatal=r.get("fatal", False),
        panic=r.get("panic", False),
        func_skip=r.get("func_skip", False),
        func_needs_stack=r.get("func_needs_stack", False),
        continues=r.get("continues", False),
        prefer=re.compile(r["prefer"]) if "prefer" in r else None,
        headed_trace=r.get("headed_trace", True),
        trace_required=r.get("trace_required", False),
        anchors=_alternation(data.get("anchors", {}).get(r["anchors"])) if "anchors" in r else None,
        frames_after=re.compile(r["frames_after"]) if "frames_after" in r else None,
        stamped=r.get("stamped", False),
        stack=r.get("stack"),
        corrupted=r.get("corrupted", False),
        not_first=r.get("not_first", False),
        suppress=tuple(re.compile(p) for p in r.get("suppress", [])),
    )


def _alternation(patterns: list[str] | None) -> Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def sanitise(title: str) -> str:
    """Addresses → ADDR, numbers → NUM, file.c:123 → file.c:LINE (stable across runs)."""
    title = re.sub(r"\b([\w/.-]+\.(?:c|h|S|rs)):\d+(?::\d+)?", r"\1:LINE", title)
    title = re.sub(r"\b0x[0-9a-fA-F]+\b", "ADDR", title)
    title = re.sub(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b", "ADDR", title)
    title = re.sub(r"(?<![\w])\d+(?![\w])", "NUM", title)
    title = re.sub(r"(?<=[A-Za-z_-])\d{6,}(?!\w)", "NUM", title)  # tmpdir123456789 → tmpdirNUM
    return re.sub(r"\s+", " ", title).strip()


@dataclass
class _Start:
    rule: Rule
    match: Match[str]
    before: Match[str] | None


class Parser:
    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or load_rules()

    def match_start(self, lines: list[Line], i: int) -> _Start | None:
        text = lines[i].text.strip()
        floating = self.rules.any_floating
        if not self.rules.any_start.match(text) and not (floating and floating.search(text)):
            return None
        for rule in self.rules.reports:
            m = rule.start.search(text)
            if not m or (rule.stamped and not lines[i].stamped):
                continue
            if rule.not_first and not any(ln.text.strip() for ln in lines[:i]):
                continue
            if any(p.search(text) for p in rule.suppress):
                return None

            before = None
            if rule.requires_before is not None:
                before = self._find_before(lines, i, rule.requires_before)
                if before is None:
                    continue
            return _Start(rule, m, before)
        return None

    def _find_before(
        self, lines: list[Line], i: int, pattern: Pattern[str], lookback: int = LOOKBACK_LINES
    ) -> Match[str] | None:
        ctx = lines[i].ctx
        for j in range(i - 1, max(-1, i - lookback), -1):
            if ctx and lines[j].ctx and lines[j].ctx != ctx:
                continue
            m = pattern.search(lines[j].text.strip())
            if m:
                return m
        return None

    def report_end(self, lines: list[Line], start: int) -> tuple[int, bool]:
        """(exclusive end index, whether the report is known to be complete)."""
        ctx = lines[start].ctx
        limit = min(len(lines), start + MAX_REPORT_LINES)
        for j in range(start + 1, limit):
            line = lines[j]
            if ctx and line.ctx and line.ctx != ctx:
                continue
            text = line.text.strip()
            if self.rules.end_markers.match(text):
                # KASAN-style reports open with a ===== line too; only a later one closes.
                return j + 1, True
            if text.startswith("Kernel panic - not syncing"):
                continue  # panic_on_warn / oops=panic: the report goes on after it
            if not ctx and self.rules.info_with_stack.search(text):
                return j, True
            found = self.match_start(lines, j)
            if found is not None and not (found.rule.continues and j - start <= CONTINUATION):
                return j, True
        return limit, limit < len(lines)

    def report_start_line(self, lines: list[Line], start: int) -> int:
        """Includes the dump_page / cut-here block printed just before the report."""
        ctx = lines[start].ctx
        first = start
        for j in range(start - 1, max(-1, start - LOOKBACK_LINES), -1):
            line = lines[j]
            if ctx and line.ctx and line.ctx != ctx:
                continue
            if not self.rules.before_lines.match(line.text):
                break
            if line.text.startswith(("page:", "page dumped because:", "------------[ cut here")):
                first = j
        return first

    def build(
        self, lines: list[Line], start: int, end: int, found: _Start, complete: bool
    ) -> Splat:
        ctx = lines[start].ctx
        first = self.report_start_line(lines, start)
        body = [ln for ln in lines[start:end] if not (ctx and ln.ctx and ln.ctx != ctx)]
        text_lines = [ln for ln in lines[first:start] if not (ctx and ln.ctx and ln.ctx != ctx)]
        text_lines += body
        report_text = "\n".join(ln.text for ln in body)
        rule = found.rule
        fields: dict[str, str | None] = {k: v for k, v in found.match.groupdict().items()}
        if found.before is not None:
            fields.update(found.before.groupdict())
        title_fmt, kind = rule.title, rule.kind
        stack_printed = rule.stack if rule.stack is not None else rule.headed_trace
        lost = rule.corrupted
        for case in rule.cases:
            m = case.when.search(report_text) if case.when is not None else None
            b = (
                self._find_before(lines, start, case.before, BEFORE_CASE_LINES)
                if case.before is not None
                else None
            )
            if (case.when is None or m) and (case.before is None or b):
                for hit in (m, b):
                    if hit:
                        fields.update({k: v for k, v in hit.groupdict().items() if v is not None})
                title_fmt, kind = case.title, case.kind or rule.kind
                stack_printed = stack_printed if case.stack is None else case.stack
                lost = lost or case.corrupted
                break
        site_skips = (*rule.skip, *self.rules.skip, *self.rules.machinery)
        skips = (*site_skips, *self.rules.library)
        all_frames = fr.frames(body, rule.headed_trace, rule.trace_required)
        stack = [f for f in all_frames if not _skipped(f, skips)] or [
            f for f in all_frames if not _skipped(f, (*rule.skip, *self.rules.skip))
        ]
        frame = stack[0] if stack else None
        if rule.anchors is not None:
            frame = _anchored(all_frames, rule.anchors, rule.frames_after, skips) or frame
        if rule.prefer is not None:
            frame = next((f for f in all_frames if rule.prefer.search(f)), frame)
        site = fr.crash_site(body)
        if "site" in rule.frame_sources and site and not _skipped(site, skips):
            frame = site if rule.frame_sources[0] == "site" else frame or site
        if (
            kind == "WARNING"
            and frame is not None
            and site
            and _skipped(frame, self.rules.machinery)
            and not _skipped(site, (*rule.skip, *self.rules.skip))
        ):
            # A WARN() is a deliberate check at its site.  When nothing but dispatchers called
            # that site (an RCU or timer callback that is itself a library function, like
            # percpu_ref_switch_to_atomic_rcu), the site names the check better than the
            # dispatcher that ran it.  Not for faults: a fault's site may be a trampoline
            # into garbage (an indirect-call thunk), and then the dispatcher is all we know.
            frame = site
        func = fields.get("func")
        if func:
            func = fr.clean(func)
            if rule.func_skip and _skipped(func, skips):
                func = frame
            fields["func"] = func
        frame = self._canonical(frame)
        # A fault-injection dump interleaved before the guilty frame: the stack we would read
        # is not (only) the report's, so the title says so instead of naming a wrong frame.
        interleaved = frame is not None and _fault_injection_before(body, frame)
        if interleaved:
            frame = CORRUPTED
        values = {
            **fields,
            "frame": frame,
            "site": frame,
            "lockfunc": self._canonical(_lock_func(body, skips) or _lock_func(body, site_skips))
            or frame,
        }
        # A report that should print a stack and has no trace header was cut off (syzkaller
        # calls it corrupted the same way); reports that print none say so (``stack``).
        corrupted = (
            interleaved
            or lost
            or (stack_printed and not any(_TRACE_WORD.search(ln.text) for ln in body))
        )
        if not all_frames and not site:
            # A report with no stack at all is truncated or garbled.
            values.update(frame=None, site=None)
        if rule.func_needs_stack and not stack:
            # A function named only in the first line, with no stack behind it that says
            # where the call came from, is not enough for a title that must be stable.
            values["func"] = None

        def fill(m: Match[str]) -> str:
            nonlocal corrupted
            joiner, names, optional = m.group(1) or "", m.group(2), m.group(3)
            value = next((values[k] for k in names.split("|") if values.get(k)), None)
            if value:
                return joiner + str(value)
            if optional:
                return ""  # "X in {frame?}" without a frame is just "X"
            corrupted = True
            return joiner + CORRUPTED

        title = sanitise(_PLACEHOLDER.sub(fill, title_fmt))
        fatal = rule.fatal or any(
            ln.text.strip().startswith("Kernel panic - not syncing") for ln in body
        )
        return Splat(
            title=title,
            kind=kind,
            frame=None if interleaved else frame,
            text="\n".join(ln.raw for ln in text_lines),
            corrupted=corrupted,
            fatal=fatal,
            frames=tuple(fr.frames(body)),
            line=lines[first].index,
        )

    def _canonical(self, func: str | None) -> str | None:
        if func is None:
            return None
        return next((name for p, name in self.rules.canonical if p.search(func)), func)

    def scan(self, lines: list[Line], state: "ScanState", final: bool) -> list[Splat]:
        """Parses ``lines`` from ``state.resume``; returns the newly completed splats.

        With ``final`` every report is complete at the end of ``lines`` (whole-log parsing);
        without it (streaming) an unfinished report is left for the next call.
        """
        new: list[Splat] = []
        i, n = state.resume, len(lines)
        while i < n:
            found = self.match_start(lines, i)
            if found is None:
                i += 1
                continue
            if found.rule.panic and state.splats and i - state.last_end <= PANIC_AFTER_REPORT:
                # The panic that ends the previous report (panic_on_warn, oops=panic, ...).
                prev = state.splats[-1]
                if not prev.fatal:
                    state.splats[-1] = replace(prev, fatal=True)
                i += 1
                state.last_end = i
                continue
            end, complete = self.report_end(lines, i)
            if not complete and not final:
                break
            splat = self.build(lines, i, end, found, complete or final)
            state.splats.append(splat)
            new.append(splat)
            state.last_end = end
            i = end
        state.resume = i
        return new


@dataclass
class ScanState:
    resume: int = 0
    last_end: int = -100
    splats: list[Splat] = field(default_factory=list)


@cache
def _skipped(func: str, skips: tuple[Pattern[str], ...]) -> bool:
    return any(p.search(func) for p in skips)


def _anchored(
    frames: list[str],
    anchors: Pattern[str],
    after: Pattern[str] | None,
    skips: tuple[Pattern[str], ...],
) -> str | None:
    """The frame a dispatcher called (vfs_write → the driver's write, process_one_work → the
    work function, the syscall entry → the syscall): during a stall the CPU may be anywhere
    inside that call, so the title names the call, not where the CPU happened to be.

    Frames from the interrupt entry outwards, machinery and helpers left out; the frame just
    before the first dispatcher anchor (the anchor itself when it comes first)."""
    if after is not None:
        cut = next((i for i, f in enumerate(frames) if after.search(f)), None)
        if cut is not None:
            frames = frames[cut + 1 :]
    kept = [
        f for f in frames if anchors.search(f) or not (_skipped(f, skips) or _SCHEDULER.match(f))
    ]
    prev = kept[0] if kept else None
    for frame in kept:
        if anchors.search(frame):
            return prev
        prev = frame
    return None


_TRACE_WORD = re.compile(r"Call [Tt]race|[Bb]acktrace")


_FAULT_INJECTION_FRAME = re.compile(r"^\s*(?:\[<?[0-9a-f]+>?\]\s*)?should_fail(?:slab)?[.+]")


def _fault_injection_before(body: list[Line], frame: str) -> bool:
    """Whether a fault-injection stack (should_fail*) is interleaved before the guilty frame.

    Fault injection dumps its own stack without caller context; when that dump lands inside a
    report the frames around it belong to either task, so no frame can be trusted.
    """
    for line in body[1:]:
        if _FAULT_INJECTION_FRAME.match(line.text):
            return True
        if fr.frame_of(line) == frame:
            return False
    return False


def _lock_func(body: list[Line], skips: tuple[Pattern[str], ...]) -> str | None:
    """Where lockdep says the offending lock was taken: ", at: func+0x.." (maybe wrapped)."""
    for line, following in zip(body, [*body[1:], None], strict=True):
        m = _LOCK_AT.search(line.text)
        if m is None and following is not None and line.text.rstrip().endswith(" at:"):
            m = _OFFSET_FUNC.search(following.text)
        if m:
            func = fr.clean(m.group("func"))
            if not _skipped(func, skips):
                return func
    return None


def dedupe(splats: list[Splat]) -> list[Splat]:
    """First splat of each title, in order."""
    seen: set[str] = set()
    out = []
    for s in splats:
        if s.title not in seen:
            seen.add(s.title)
            out.append(s)
    return out
