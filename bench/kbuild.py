"""Incremental kernel rebuild: `memharness kernel build` vs plain make, same tree, same run.

    python bench/kbuild.py [--arch x86_64] [--file mm/memory-failure.c] [--rounds 3]

A hard-linked copy of Debian's linux-source tree plays the user's tree.  After a first full
build, each round changes one file and rebuilds through memharness, then changes it again and
runs the plain make command memharness would run.  Target (issue 5): ratio <= 1.2.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.arch import get_arch  # noqa: E402
from harness.kernel.build import (  # noqa: E402
    DEFAULT_FRAGMENTS,
    BuildRequest,
    build_kernel,
    check_host,
    fragment_files,
)
from harness.kernel.source import debian_source, user_source  # noqa: E402


def touch(path: Path, round_no: int) -> None:
    """A real one-line change (a new file, so the hard link to the cache breaks)."""
    text = path.read_text()
    path.unlink()
    path.write_text(text + f"\n/* memharness bench round {round_no} */\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="x86_64")
    ap.add_argument("--file", default="mm/memory-failure.c")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    arch = get_arch(args.arch)
    variables = check_host(arch)
    tree = Path(tempfile.mkdtemp(prefix="mh-kbench-")) / "linux"
    subprocess.run(["cp", "-al", str(debian_source().path), str(tree)], check=True)
    fragments = list(DEFAULT_FRAGMENTS)
    out = build_kernel(arch, user_source(tree), fragments)  # full build (ccache helps)
    request = BuildRequest(arch, user_source(tree), fragment_files(fragments, arch))
    target = Path(arch.kernel_image).name
    plain = ["make", "-C", str(tree), f"O={out}", *variables, "-j2", target, "vmlinux"]
    mh_times, make_times = [], []
    for i in range(args.rounds):
        touch(tree / args.file, 2 * i)
        start = time.monotonic()
        build_kernel(arch, user_source(tree), fragments)
        mh_times.append(time.monotonic() - start)
        touch(tree / args.file, 2 * i + 1)
        start = time.monotonic()
        subprocess.run(plain, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        make_times.append(time.monotonic() - start)
    shutil.rmtree(tree.parent, ignore_errors=True)
    mh, make = statistics.median(mh_times), statistics.median(make_times)
    print(
        f"{arch.name}: one-file rebuild of {args.file}: memharness {mh:.1f} s, plain make "
        f"{make:.1f} s, ratio {mh / make:.2f} (build dir {request.directory})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
