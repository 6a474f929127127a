"""The known-issues registry: which splat titles are known kernel bugs, on which kernels.

A nightly run of a debug kernel meets the same known 6.1 bugs in many scenarios.  A splat whose
title is registered, on a kernel the entry applies to (arch, version range, config options),
does not fail the run: it is listed as a known issue with its entry.  Any other title is new
and fails the run.  An entry that applies to the kernel but that no scenario of a full run met
is reported as possibly fixed.  The registry is data (registry.toml); this module loads it,
refuses what is malformed, and matches titles.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from re import Pattern
from typing import Any

from harness.datafile import load_toml, reject_unknown
from harness.errors import UserError
from harness.kernel.model import Kernel
from harness.kernel.version import VersionRange, parse_version
from harness.splat.model import Splat

REGISTRY = Path(__file__).with_name("registry.toml")
ENTRY_KEYS = (
    "name",
    "title",
    "title_regex",
    "text_regex",
    "arches",
    "versions",
    "config",
    "upstream",
    "why",
    "evidence",
    "flaky",
    "selftest",
)


@dataclass(frozen=True)
class KnownIssue:
    title: str  # the sanitised splat title, as memharness prints it
    title_regex: Pattern[str] | None  # or a pattern, for titles that vary
    text_regex: Pattern[str] | None  # and, optionally, the report's own signature
    arches: tuple[str, ...]  # empty: every arch
    versions: VersionRange
    config: tuple[str, ...]  # options the kernel needs for the splat to fire
    upstream: str  # fix commit, thread, or "not reported"
    why: str  # one sentence: what the bug is
    evidence: str = ""  # where it was seen, how it was classified
    name: str = ""  # how reports call it (default: the title or its pattern)
    flaky: bool = False  # a race: not meeting it in a run is no sign of a fix
    selftest: str = ""  # a failing subtest of this mm selftest, not a splat (title: its name)

    @property
    def id(self) -> str:
        return self.name or self.title or (self.title_regex.pattern if self.title_regex else "")

    @property
    def signature(self) -> tuple[str, str, str]:
        """What it matches on: two entries with the same signature are one entry twice."""
        return (
            self.title,
            self.title_regex.pattern if self.title_regex else "",
            self.text_regex.pattern if self.text_regex else "",
        )

    def matches(self, splat: Splat) -> bool:
        """The title (exact or pattern) and, when given, the report's text: a bug whose
        faulting function varies with whoever touches the memory first is recognised by its
        fault (e.g. a level 1 translation fault with pud=0), not by a list of functions."""
        titled = self.matches_title(splat.title)
        return titled and (self.text_regex is None or bool(self.text_regex.search(splat.text)))

    def matches_title(self, title: str) -> bool:
        if self.title_regex is not None:
            return bool(self.title_regex.search(title))
        return title == self.title

    def applies_to(self, kernel: Kernel) -> str | None:
        """None when the entry applies to ``kernel``, else why not (for 'not applicable')."""
        if self.arches and kernel.arch.name not in self.arches:
            return f"only on {', '.join(self.arches)}"
        version = parse_version(kernel.release)
        if version is not None and not self.versions.contains(version):
            return f"only for kernels {self.versions}"
        absent = kernel.missing_options(self.config)
        if absent:
            return f"needs {', '.join(absent)}"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.id,
            "arches": list(self.arches),
            "versions": str(self.versions),
            "config": list(self.config),
            "upstream": self.upstream,
            "why": self.why,
            "flaky": self.flaky,
        }


@dataclass(frozen=True)
class Registry:
    issues: tuple[KnownIssue, ...]

    def known(self, splat: Splat, kernel: Kernel) -> KnownIssue | None:
        """The entry that makes ``splat`` a known issue on ``kernel``, if any."""
        return next(
            (i for i in self.splat_issues if i.matches(splat) and i.applies_to(kernel) is None),
            None,
        )

    @property
    def splat_issues(self) -> tuple[KnownIssue, ...]:
        return tuple(i for i in self.issues if not i.selftest)

    def known_selftest(self, test: str, subtest: str, kernel: Kernel) -> KnownIssue | None:
        """The entry that makes failing subtest ``subtest`` of selftest ``test`` known on
        ``kernel`` (a selftest that fails on a kernel for a known reason), if any."""
        return next(
            (
                i
                for i in self.issues
                if i.selftest == test and i.matches_title(subtest) and i.applies_to(kernel) is None
            ),
            None,
        )

    def not_on(self, title: str, kernel: Kernel) -> str | None:
        """Why a scenario's declared known bug ``title`` is not expected on ``kernel``: the
        entries for that title (its text aside: a scenario declares a title) all exclude the
        kernel (a 6.1-only bug on 6.12).  None when one applies, or none is registered (a
        declared bug nobody placed is expected everywhere)."""
        entries = [i for i in self.splat_issues if i.matches_title(title)]
        reasons = [i.applies_to(kernel) for i in entries]
        if not entries or any(r is None for r in reasons):
            return None
        pairs = zip(entries, reasons, strict=True)
        return "registered " + "; ".join(f"{i.id} {r}" for i, r in pairs)

    def same_bug(self, title: str, splat: Splat, kernel: Kernel) -> bool:
        """Whether ``splat`` is the bug a scenario declares by ``title``: the same title, or
        one registry entry (applying to ``kernel``) that recognises both.  A bug whose title
        names whoever drops the reference (a pipe on one kernel, io_uring on the next) stays
        the scenario's own bug across kernels."""
        if splat.title == title:
            return True
        return any(
            i.matches_title(title) and i.matches(splat) and i.applies_to(kernel) is None
            for i in self.splat_issues
        )

    def applicable(self, kernel: Kernel) -> list[KnownIssue]:
        """Splat entries for ``kernel`` (selftest entries are the selftests command's)."""
        return [i for i in self.splat_issues if i.applies_to(kernel) is None]

    def possibly_fixed(
        self, kernels: Iterable[Kernel], seen: Iterable[tuple[str, Splat]]
    ) -> list[tuple[KnownIssue, str]]:
        """Entries that apply to a kernel of the run but matched no splat on it: (entry, arch).
        ``seen`` holds (arch, splat) of every splat of the run.  Flaky entries (races) are
        never candidates: one run that missed a race says nothing about a fix."""
        met = list(seen)
        out = []
        for kernel in kernels:
            splats = [s for a, s in met if a == kernel.arch.name]
            for issue in self.applicable(kernel):
                if not issue.flaky and not any(issue.matches(s) for s in splats):
                    out.append((issue, kernel.arch.name))
        return out


@cache
def load_registry(path: Path = REGISTRY) -> Registry:
    """The registry; one-line UserErrors for unknown keys, bad regexes, bad version ranges and
    titles registered twice."""
    data = load_toml(path, "known-issues registry")
    reject_unknown(data, ("issue",), f"known-issues registry {path}")
    issues = []
    for i, entry in enumerate(data.get("issue", []), 1):
        where = f"known-issues registry {path}: issue {i} ({entry.get('title', '?')!r})"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: write entries as [[issue]] tables")
        reject_unknown(entry, ENTRY_KEYS, where)
        if bool(entry.get("title")) == bool(entry.get("title_regex")):
            raise UserError(f"{where}: give exactly one of title and title_regex")
        for key in ("upstream", "why"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise UserError(f"{where}: {key} must be a non-empty string")
        try:
            regex = re.compile(entry["title_regex"]) if entry.get("title_regex") else None
            text = re.compile(entry["text_regex"]) if entry.get("text_regex") else None
        except re.error as exc:
            raise UserError(f"{where}: bad regex {exc.pattern!r}: {exc}") from None
        flaky = entry.get("flaky", False)
        if not isinstance(flaky, bool):
            raise UserError(f"{where}: flaky must be true or false")
        try:
            versions = VersionRange.parse(str(entry.get("versions", "")))
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        issues.append(
            KnownIssue(
                title=str(entry.get("title", "")),
                title_regex=regex,
                text_regex=text,
                arches=tuple(entry.get("arches", ())),
                versions=versions,
                config=tuple(entry.get("config", ())),
                upstream=entry["upstream"],
                why=entry["why"],
                evidence=str(entry.get("evidence", "")),
                name=str(entry.get("name", "")),
                flaky=flaky,
                selftest=str(entry.get("selftest", "")),
            )
        )
    for field in ("id", "signature"):
        keys = [getattr(i, field) for i in issues]
        dupes = sorted({str(k) for k in keys if keys.count(k) > 1})
        if dupes:
            raise UserError(f"known-issues registry {path}: registered twice: {dupes[0]}")
    return Registry(tuple(issues))
