"""What a splat is, independent of how it was found."""

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Splat:
    """One kernel report (BUG, WARNING, Oops, panic, ...) found in a console log."""

    title: str  # stable, sanitised: the same bug gets the same title across runs and kernels
    kind: str  # BUG | WARNING | PANIC | BAD_PAGE | MEMORY_FAILURE | KASAN | HANG | LOCKDEP | ...
    frame: str | None  # the guilty frame (first frame outside helpers), if there is one
    text: str  # the report's raw lines, timestamps kept
    corrupted: bool = False  # truncated or garbled: the title may be less precise
    fatal: bool = False  # the kernel stops here (panic) or the task died (oops)
    frames: tuple[str, ...] = field(default=())  # call trace functions, innermost first
    line: int = 0  # 0-based line of the report's first line in the log

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0] if self.text else self.title

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["frames"] = list(self.frames)
        return data
