"""Planning speed: `snakemake -n` on the paper preset (goal: at most 30 s), and its jobs per rule.

The baseline in the same run is Snakemake's own floor: a dry run of a one-rule workflow
(interpreter start-up, imports, DAG machinery). ratio = paper-preset planning time / floor.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dry_run(args: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    return elapsed, done.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "Snakefile").write_text('rule a:\n    output: "a.txt"\n    shell: "touch {output}"\n')
        floor = min(dry_run(["-s", str(tmp / "Snakefile")], tmp)[0] for _ in range(3))
        runs = [dry_run(["-s", str(REPO / "Snakefile"), "-d", str(tmp / "work"), "--configfile", str(REPO / "presets/paper.yaml")], tmp) for _ in range(3)]
    seconds = min(r[0] for r in runs)
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", runs[0][1], flags=re.M)}
    for rule, n in counts.items():
        print(f"{rule:>24} {n}")
    print(f"paper preset planned in {seconds:.2f} s (goal <= 30 s); Snakemake floor {floor:.2f} s")
    print(
        json.dumps(
            {
                "bench": "dag",
                "ratio": round(seconds / floor, 3),
                "seconds": round(seconds, 3),
                "floor_seconds": round(floor, 3),
                "goal_seconds": 30,
                "jobs": counts,
            }
        )
    )


if __name__ == "__main__":
    main()
