"""How long `make test` takes from a clean clone, as CI runs it.

Each run clones the repository (a commit of it) into a new directory, runs `make test` there
(the gateway's environment is installed from the lock; the serving tier's environment, built
once per machine, is shared), and records the wall time, the time of each phase the test
command reports, the tests each pass ran, the coverage of api/ (where the run reports it), the
machine's load before the run and how busy its processors were during it. Runs are
sequential; the clones are removed.

    .venv/bin/python bench/test_command.py [--runs 3] [--ref HEAD]

Prints a table and writes the figures to bench/results/test-command-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "bench" / "results"


@dataclass
class Run:
    number: int
    seconds: float
    exit_code: int
    load_before: tuple[float, float, float]
    busy: float  # share of the processors' time spent working during the run
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds into the run
    passes: list[str] = field(default_factory=list)  # pytest's summary line of each pass
    coverage: str = ""


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all processors so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def processor() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def one_run(number: int, ref: str, logs: Path) -> Run:
    clone = Path(tempfile.mkdtemp(prefix="lighthouse-ci-"))
    log = logs / f"run-{number}.log"
    try:
        subprocess.run(["git", "clone", "--quiet", str(REPOSITORY), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", ref], check=True)
        load = os.getloadavg()
        busy_before, total_before = cpu_times()
        started = time.monotonic()
        with log.open("w") as out:
            done = subprocess.run(
                ["make", "test"], cwd=clone, stdout=out, stderr=subprocess.STDOUT, check=False
            )
        seconds = time.monotonic() - started
        busy_after, total_after = cpu_times()
    finally:
        shutil.rmtree(clone, ignore_errors=True)
    text = log.read_text(errors="replace")
    phases = {
        name.strip(): int(minutes) * 60 + int(secs)
        for name, minutes, secs in re.findall(r"^== (.+?)\s+\[(\d+)m(\d+)s\]$", text, re.M)
    }
    passes = re.findall(r"^=*\s*(\d+ passed.*?) in [\d.]+s", text, re.M)
    coverage = next(iter(re.findall(r"^coverage of api/: (.*)$", text, re.M)), "")
    return Run(
        number=number,
        seconds=round(seconds, 1),
        exit_code=done.returncode,
        load_before=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
        busy=round((busy_after - busy_before) / max(total_after - total_before, 1), 3),
        phases=phases,
        passes=passes,
        coverage=coverage,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ref", default="HEAD", help="the commit to clone (default HEAD)")
    arguments = parser.parse_args()
    ref = subprocess.run(
        ["git", "-C", str(REPOSITORY), "rev-parse", arguments.ref],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = RESULTS / f"test-command-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    machine = {
        "processor": processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
    }
    print(f"make test from clean clones of {ref[:12]} on {machine}; logs in {logs}")
    runs = []
    for number in range(1, arguments.runs + 1):
        run = one_run(number, ref, logs)
        runs.append(run)
        print(
            f"run {number}: {run.seconds / 60:.1f} min, exit {run.exit_code}, load before "
            f"{run.load_before[0]}, processors busy {run.busy:.0%}; {'; '.join(run.passes)}; "
            f"{run.coverage}",
            flush=True,
        )
    times = [run.seconds for run in runs]
    print(
        f"median {statistics.median(times) / 60:.1f} min, "
        f"min {min(times) / 60:.1f}, max {max(times) / 60:.1f} ({len(times)} runs)"
    )
    (RESULTS / f"test-command-{stamp}.json").write_text(
        json.dumps(
            {"ref": ref, "machine": machine, "runs": [asdict(run) for run in runs]}, indent=2
        )
    )


if __name__ == "__main__":
    main()
