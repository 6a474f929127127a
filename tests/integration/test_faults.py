"""Fault injection: hostile-but-fair inputs and faults, each through the real CLI or a real VM.

After every fault: one clear outcome (or a one-line error and exit 2 for bad input), no QEMU
left running, no socket directory of ours left behind, and a record on disk for every signal
that can be caught.
"""

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.arch import ArchProfile
from harness.outcome import Outcome, decide
from harness.tempdirs import PREFIX, start_time, sweep_stale
from harness.vm.channel import CommandResult, argv_script
from harness.vm.machine import VM
from tests.integration.cli import boot_json, memharness, run_json

TMP = Path(os.environ.get("TMPDIR", "/tmp"))


def qemu_pids(marker: str) -> list[int]:
    """QEMU processes whose command line mentions ``marker`` (an artifacts path)."""
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{marker}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def sockdirs_of(pid: int) -> list[Path]:
    return list(TMP.glob(f"{PREFIX}{pid}-*"))


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- the command line means what it says -------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "stdout", "status"),
    [
        (["sh", "-c", "exit 7"], b"", 7),
        (["echo", "a   b", "$HOME", "it's", ""], b"a   b $HOME it's \n", 0),
        (["printf", "%s\\n", "Ωmega"], "Ωmega\n".encode(), 0),
        (
            ["printf", "%s|", "back\\slash", "*", "`id`", "$(id)", ";", '"q"'],
            b'back\\slash|*|`id`|$(id)|;|"q"|',
            0,
        ),
    ],
    ids=["exit-status", "spaces-and-dollar", "utf-8", "shell-metacharacters"],
)
@pytest.mark.x86_64
def test_argument_vectors_arrive_exactly(
    arch: ArchProfile, tmp_path: Path, argv: list[str], stdout: bytes, status: int
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "boot",
            "-q",
            "--arch",
            arch.name,
            "--artifacts",
            str(tmp_path),
            "--",
            *argv,
        ],
        capture_output=True,
        timeout=300,
    )
    assert (done.returncode, done.stdout) == (status, stdout), done.stderr
    # reproduce.sh re-runs exactly the same vector.
    (run,) = tmp_path.iterdir()
    repro = (run / "reproduce.sh").read_text().splitlines()[-1]
    assert repro.endswith(argv_script(["--", *argv])), repro


@pytest.mark.x86_64
def test_binary_output_survives_json(arch: ArchProfile, tmp_path: Path) -> None:
    data = json.loads(boot_json(arch, tmp_path, "printf", "\\377\\000ok\\n").stdout)
    assert data["stdout_encoding"] == "base64"
    assert base64.b64decode(data["stdout_b64"]) == b"\xff\x00ok\n"
    ok = json.loads(
        memharness("boot", "--json", "--artifacts", str(tmp_path), "--", "echo", "Ωk").stdout
    )
    assert (ok["stdout"], ok["stdout_encoding"]) == ("Ωk\n", "utf-8") and "stdout_b64" not in ok


@pytest.mark.x86_64
def test_accel_auto_json_stdout_is_only_json(arch: ArchProfile, tmp_path: Path) -> None:
    """Whatever the KVM probe says (works, fails, unusable), it says it on stderr."""
    done = memharness(
        "boot", "--accel", "auto", "--json", "--artifacts", str(tmp_path), "--", "true"
    )
    data = json.loads(done.stdout)  # the whole of stdout parses
    assert data["outcome"] == "pass" and data["accel_note"], done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["boot", "--timeout", "-1"],
        ["boot", "--timeout", "0"],
        ["boot", "--timeout", "nan"],
        ["boot", "--timeout", "inf"],
        ["boot", "--boot-timeout", "-1"],
        ["boot", "--keep", "0"],
        ["run", "--keep", "-3"],
        ["kernel", "build", "--jobs", "0"],
        ["clean", "--keep", "x"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_numbers_are_refused_before_anything_starts(args: list[str], tmp_path: Path) -> None:
    extra = ["--artifacts", str(tmp_path / "art")] if args[0] in ("boot", "run") else []
    done = memharness(*args, *extra, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "memharness: error:" in done.stderr
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'[[scenario]]\nname = "\xff\xfe"\n', "is not UTF-8 (byte"),
        (b"[[scenario]\n", "is not valid TOML"),
        (
            b'[[scenario]]\nname="x"\narch="x86_64"\nsummary="s"\nteardwn=false\n'
            b'layout={kind="legacy",memory="2G"}\n',
            "unknown key 'teardwn'",
        ),
        (
            b'[[scenario]]\nname="x"\narch="x86_64"\nsummary="s"\nteardown="no"\n'
            b'layout={kind="legacy",memory="2G"}\n',
            "teardown must be a bool",
        ),
        (b"[scenarios]\n", "unknown key 'scenarios'"),
    ],
    ids=["not-utf8", "not-toml", "unknown-key", "wrong-type", "unknown-table"],
)
def test_bad_catalogue_is_one_line(content: bytes, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "catalogue.toml"
    path.write_bytes(content)
    for command in (["scenarios"], ["run", "--artifacts", str(tmp_path / "a")]):
        done = memharness(*command, "--catalogue", str(path), timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and needle in done.stderr, done.stderr


# -- signals: an interrupted run still leaves its record ---------------------------------------


def _interrupt_run(
    tmp_path: Path, sig: int, ready: Callable[[Path, str], bool], jobs: int = 1
) -> tuple[subprocess.Popen[str], str, Path]:
    """Starts a run of ``jobs + 1`` scenarios, ``jobs`` at a time, and sends ``sig`` once
    ``ready(artifacts, stderr so far)``."""
    art = tmp_path / f"art-j{jobs}"
    report = tmp_path / "report.json"
    scenarios = ["legacy-lower-half", "legacy-upper-half", "legacy-middle"][: jobs + 1]
    child = spawn(
        "run",
        "--arch",
        "x86_64",
        "--scenario",
        ",".join(scenarios),
        "-j",
        str(jobs),
        "--artifacts",
        str(art),
        "--json",
        str(report),
    )
    err: list[str] = []
    assert child.stderr is not None
    stream = child.stderr
    reader = threading.Thread(target=lambda: err.extend(iter(stream.readline, "")), daemon=True)
    reader.start()
    wait_for(lambda: ready(art, "".join(err)) or child.poll() is not None, 300, "the phase")
    os.kill(child.pid, sig)
    child.wait(60)
    reader.join(10)
    return child, "".join(err), report


def _jobs_of(art: Path) -> int:
    """How many scenarios ``_interrupt_run`` runs at once (it names the folder after -j)."""
    return int(art.name.removeprefix("art-j"))


PHASES: dict[str, Callable[[Path, str], bool]] = {
    # kernel and image preparation (cached here, so a short window) and the scenario checks
    "prepare": lambda art, err: "preparing" in err,
    # QEMU started for every running scenario (one per job) and none finished yet, so the
    # scenario after them cannot have started when the signal comes
    "boot": lambda art, err: (
        len(list(art.glob("*/qemu.argv"))) == _jobs_of(art) and not any(art.glob("*/result.json"))
    ),
    # guest commands running (the transcript has a command in it)
    "step": lambda art, err: (
        any(p.stat().st_size > 200 for p in art.glob("*/transcript.log"))
        and not any(art.glob("*/result.json"))
    ),
}


@pytest.mark.x86_64
@pytest.mark.parametrize("jobs", [1, 2], ids=["j1", "j2"])
@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_at_each_phase_leaves_a_record(
    arch: ArchProfile, tmp_path: Path, phase: str, sig: int, jobs: int
) -> None:
    """With -j N the first N scenarios run at once: a signal stops all of them (each recorded
    as interrupted, with its record on disk) and the last one never starts."""
    child, err, report = _interrupt_run(tmp_path, sig, PHASES[phase], jobs)
    assert child.returncode == 128 + sig, err
    assert "Traceback" not in err
    data = json.loads(report.read_text())
    assert data["interrupted"] == signal.Signals(sig).name and data["exit_code"] == 128 + sig
    assert data["not_run"], f"the last scenario never ran: {data['results']}\n{err}"
    if phase != "prepare":
        assert data["results"], "the running scenarios are recorded"
        for result in data["results"]:
            assert result["outcome"] == "interrupted", result
            run = Path(result["artifacts"])
            for name in ("result.json", "reproduce.sh"):
                assert (run / name).is_file(), name
            assert json.loads((run / "result.json").read_text())["outcome"] == "interrupted"
        first = Path(data["results"][0]["artifacts"])
        for name in ("splats.json", "console.log"):
            assert (first / name).is_file(), name
    assert qemu_pids(str(tmp_path)) == []
    assert sockdirs_of(child.pid) == []


@pytest.mark.x86_64
def test_sigkill_during_boot_leaves_nothing_running_and_is_swept(
    arch: ArchProfile, tmp_path: Path
) -> None:
    child = spawn("boot", "--artifacts", str(tmp_path), "--", "sleep", "60")
    wait_for(
        lambda: bool(sockdirs_of(child.pid) and qemu_pids(str(tmp_path))), 120, "QEMU to start"
    )
    child.kill()
    child.wait(30)
    # PR_SET_PDEATHSIG: the kernel kills QEMU with its parent.
    wait_for(lambda: not qemu_pids(str(tmp_path)), 30, "QEMU to die with memharness")
    (stale,) = sockdirs_of(child.pid)
    assert stale in sweep_stale(), "a dead process's directory is swept"
    assert not stale.exists()


def test_sweep_keeps_live_owners(tmp_path: Path) -> None:
    me = os.getpid()
    live = tmp_path / f"{PREFIX}{me}-{start_time(me)}-abc"
    reused = tmp_path / f"{PREFIX}{me}-{(start_time(me) or 0) + 1}-abc"  # the pid was reused
    dead = tmp_path / f"{PREFIX}999999999-5-abc"
    other = tmp_path / "mh-not-ours"
    for d in (live, reused, dead, other):
        d.mkdir()
    assert sorted(sweep_stale(tmp_path)) == sorted([reused, dead])
    assert live.exists() and other.exists()


# -- faults of QEMU and of the guest ----------------------------------------------------------


@pytest.mark.x86_64
def test_sigstopped_qemu_becomes_a_hang(vm: VM) -> None:
    assert vm._proc is not None
    os.kill(vm._proc.pid, signal.SIGSTOP)
    start = time.monotonic()
    result = vm.run("true", timeout=5)
    assert result.timed_out and time.monotonic() - start < 15
    assert decide(vm.facts())[0] == Outcome.HANG
    vm.stop()  # a stopped QEMU is still killed and reaped
    assert vm._proc.poll() is not None


@pytest.mark.x86_64
def test_killed_guest_agent_is_a_hang_not_a_stuck_run(vm: VM) -> None:
    start = time.monotonic()
    result = vm.run("kill -9 $PPID; sleep 30", timeout=8, check=False)
    assert result.exit_code is None and time.monotonic() - start < 20
    assert decide(vm.facts())[0] in (Outcome.HANG, Outcome.INFRA_ERROR)


@pytest.mark.allow_splats
@pytest.mark.x86_64
def test_panic_during_a_walk_stops_the_walker_at_once(vm_factory: Callable[..., VM]) -> None:
    machine = vm_factory(ports=2)
    assert machine.ready
    walked: dict[str, CommandResult] = {}

    def walk() -> None:
        walked["r"] = machine.run(
            "while :; do mh-walk kpageflags 0 32768 >/dev/null; done",
            timeout=120,
            check=False,
            port=1,
        )

    walker = threading.Thread(target=walk)
    walker.start()
    time.sleep(1.0)
    machine.run("echo c > /proc/sysrq-trigger", timeout=60, check=False)
    walker.join(30)
    assert not walker.is_alive(), "the walker waited on a dead guest"
    assert walked["r"].stopped_by and not walked["r"].timed_out
    assert decide(machine.facts())[0] == Outcome.KERNEL_SPLAT


@pytest.mark.x86_64
def test_panic_during_a_hotplug_step(arch: ArchProfile, tmp_path: Path) -> None:
    catalogue = tmp_path / "c.toml"
    catalogue.write_text(
        """
[[scenario]]
name = "panic-in-hotplug"
arch = "x86_64"
summary = "plug a dimm, crash the guest, then try to walk it"
walkers = ["kpageflags"]
layout = { kind = "hotplug", memory = "1G", slots = 2, maxmem = "2G" }
steps = [
  { plug = "pc-dimm", id = "d0", size = "128M" },
  { online = "d0" },
  { guest = ["sh", "-c", "echo c > /proc/sysrq-trigger"] },
  { walk = "d0" },
]
"""
    )
    start = time.monotonic()
    done, data = run_json(tmp_path, "--arch", "x86_64", "--catalogue", str(catalogue))
    assert done.returncode == 1, done.stderr
    (row,) = data["results"]
    assert row["outcome"] == "kernel-splat" and "sysrq" in row["reason"]
    assert time.monotonic() - start < 120
    assert qemu_pids(str(tmp_path)) == []


# -- the disk, the cache ----------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(
            f"SKIPPED LOUDLY: cannot mount a small tmpfs here (needs root): {made.stderr!r}"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.x86_64
def test_full_disk_is_one_line_infra_error(arch: ArchProfile, tiny_tmpfs: Path) -> None:
    done = memharness("boot", "--artifacts", str(tiny_tmpfs), "--", "true", timeout=120)
    assert done.returncode == 125, done.stderr
    assert "Traceback" not in done.stderr and "free" in done.stderr
    assert done.stderr.count("\n") == 1
    assert qemu_pids(str(tiny_tmpfs)) == []


@pytest.mark.x86_64
def test_corrupt_cached_image_is_rebuilt_not_booted(arch: ArchProfile, tmp_path: Path) -> None:
    from harness import cache
    from harness.session import prepare

    _, image = prepare(arch, None)
    blob = bytearray(image.initrd.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    image.initrd.write_bytes(bytes(blob))
    cache._verified.clear()  # a new process would check it anew
    _, again = prepare(arch, None)
    assert again.initrd.read_bytes() != bytes(blob), "the corrupted initrd was reused"
    done = memharness("boot", "--artifacts", str(tmp_path), "--", "true")
    assert done.returncode == 0, done.stderr


def test_two_processes_preparing_one_entry_build_it_once(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from harness.cache import build_once\n"
        "def build(tmp):\n"
        "    with open(sys.argv[1], 'a') as f: f.write('built\\n')\n"
        "    time.sleep(1.0)\n"
        "    (tmp / 'x').write_text('x')\n"
        "print(build_once('race', 'k', build))\n"
    )
    env = dict(os.environ, MEMHARNESS_CACHE=str(tmp_path / "cache"))
    log = tmp_path / "log"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(log)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [c.communicate(timeout=60)[0].strip() for c in children]
    assert all(c.returncode == 0 for c in children)
    assert outs[0] == outs[1] and (Path(outs[0]) / "x").read_text() == "x"
    assert log.read_text() == "built\n"
