"""Stack frames and crash sites in report text (pure).

Recognises the frame notations of x86 and arm64 kernels, old and new: ``func+0x1f/0x280``,
``[<ffffffff810a376f>] func+0x..``, symbolised ``func file.c:123 [inline]``, ``RIP: 0010:func``,
``pc : func+0x..``, ``PC is at func``.  Frames printed with ``?`` are unreliable and never
chosen as the guilty frame.
"""

import re
from collections.abc import Iterable

from harness.splat.lines import Line

FUNC = r"(?P<func>[A-Za-z_$][\w.$]*)"
_OFFSET = re.compile(r"(?:^|[\s(\]>:])" + FUNC + r"\+0x[0-9a-fA-F]+(?:/0x[0-9a-fA-F]+)?")
_SYMBOLISED = re.compile(r"^\s+" + FUNC + r"\s+\S+\.[chS]:\d+(?::\d+)?(?:\s+\[inline\])?\s*$")
_UNRELIABLE = re.compile(r"^\s*(?:\[<?[0-9a-fA-F]+>?\]\s*)?\?\s|\(unreliable\)\s*$")
_ADDRESS_PREFIX = re.compile(r"^\[<?[0-9a-fA-F]+>?\]")  # x86 "[<ffff..>]", powerpc "[c000..]"
_CRASH_SITE = re.compile(
    r"^\s*(?:RIP: [0-9a-fA-F]{4}:|RIP:|IP:|EIP:|pc\s*:|PC is at|NIP\s*\[|epc\s*:|PC:)"
)
_REGISTER_LINE = re.compile(
    r"^\s*(?:R[A-Z0-9]{2}: |[a-z]?[0-9]{1,2}\s*: [0-9a-f]{16}|lr\s*:|sp\s*:)"
)


_CXX_NAME = re.compile(r"^_Z(\d+)(\w+)$")
_ARCH_SYSCALL = re.compile(r"^__(?:x64|ia32|arm64|se|x32)_(?:compat_)?sys_")


def clean(func: str) -> str:
    """Drops compiler suffixes and arch syscall wrappers so a title survives kernel versions:
    __call_rcu.constprop.76 → __call_rcu, __x64_sys_rmdir → sys_rmdir, SyS_mount → mount,
    ksys_mount (the syscall's body, called from its wrapper) → mount."""
    mangled = _CXX_NAME.match(func)  # C++ (Itanium) names from out-of-tree or test code
    if mangled and len(mangled.group(2)) >= int(mangled.group(1)):
        func = mangled.group(2)[: int(mangled.group(1))]
    func = func.split(".")[0] if not func.startswith(".") else func
    func = func.removesuffix("_noprof")  # 6.10+ allocation wrappers: same function, new name
    for prefix in ("SyS_", "compat_SyS_", "__do_sys_", "__do_compat_sys_", "__se_sys_", "ksys_"):
        if func.startswith(prefix):
            return func[len(prefix) :]
    return _ARCH_SYSCALL.sub("sys_", func)


def frame_of(line: Line) -> str | None:
    """The function a stack-trace line names, or None (also for unreliable '?' frames)."""
    text = line.text
    if _UNRELIABLE.search(text) or _CRASH_SITE.match(text) or _REGISTER_LINE.match(text):
        return None
    m = _SYMBOLISED.match(text)
    if m:
        return clean(m.group("func"))
    if not text[:1].isspace() and not _ADDRESS_PREFIX.match(text):
        return None  # frames are indented; a message mentioning func+0x is not a frame
    m = _OFFSET.search(text)
    return clean(m.group("func")) if m else None


def crash_site(lines: Iterable[Line]) -> str | None:
    """The function the CPU was executing (RIP / IP / pc / PC is at), if printed."""
    for line in lines:
        if _CRASH_SITE.match(line.text):
            m = _OFFSET.search(line.text)
            if m:
                return clean(m.group("func"))
            sym = re.search(r"(?:RIP: [0-9a-fA-F]{4}:|pc\s*:)\s*" + FUNC + r"\s", line.text + " ")
            if sym and not re.fullmatch(r"0x[0-9a-f]+|[0-9a-f]{8,}", sym.group("func")):
                return clean(sym.group("func"))
    return None


_TRACE_START = re.compile(
    r"(?:Call Trace:|Call trace:|Backtrace:|stack backtrace:|backtrace(?: \(crc \w+\))?:|"
    r"^\s*<(?:IRQ|NMI|TASK)>|Exception stack|^-> #\d+|state was registered at:|"
    r"^\s*\[<[0-9a-f]+>\] \(\w+\) from)"
)


def frames(lines: Iterable[Line], headed: bool = True, required: bool = False) -> list[str]:
    """Every reliable frame of the report's stack traces, innermost first, as printed.

    When the report has a trace header, only lines after it count: a function printed
    elsewhere (a held lock's "at: func", an allocation site) is evidence of something else,
    not of the call path.  Reports without a header (KMSAN, KFENCE) list frames directly;
    with ``required`` (lockdep-style reports, which print lock sites before their trace) a
    report whose header was cut off has no frames at all.
    """
    lines = list(lines)
    has_header = any(_TRACE_START.search(ln.text) for ln in lines)
    out, in_trace = [], not headed or not (has_header or required)
    for line in lines:
        if not in_trace and _TRACE_START.search(line.text):
            in_trace = True
        if in_trace and (f := frame_of(line)):
            out.append(f)
    return out
