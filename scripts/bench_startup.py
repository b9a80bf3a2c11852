"""Start-up: netviz commands as whole processes beside `python -c "import torch"`.

Each command runs as a user runs it (a new process), the contenders alternating, ``--repeats``
times; the median wall time of each and its ratio to importing torch (target: <= 1.5x, i.e.
netviz's own imports, model build, checkpoint load and drawing below half of torch's import).
Then where the time goes, for the slowest command: ``python -X importtime`` summed per top-level
package, and the command's own work after its imports.

    NETVIZ_DATA=../shared/data python scripts/bench_startup.py --run /tmp/netviz-test-cache/mnist-3ep-seed1
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict


def wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def import_times(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Seconds of import per top-level package (cumulative times of the top-level imports)."""
    done = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]] if cmd[0] == sys.executable else cmd,
                          capture_output=True, text=True, env=env)
    total: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) == 1:  # a top-level import (one space of indentation)
            total[m.group(4).split(".")[0]] += int(m.group(2)) / 1e6
    return dict(total)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    env = dict(os.environ, NETVIZ_OFFLINE="1")
    out = tempfile.mkdtemp()
    netviz = [sys.executable, "-m", "netviz"]
    contenders = {
        'python -c "import torch"': lambda k: [sys.executable, "-c", "import torch"],
        "netviz layers RUN": lambda k: [*netviz, "layers", args.run],
        "netviz attribute RUN --index 0-7": lambda k: [*netviz, "attribute", args.run, "--index", "0-7", "--quiet",
                                                       "--out", f"{out}/attr-{k}"],
        "netviz activations RUN": lambda k: [*netviz, "activations", args.run, "--quiet", "--out", f"{out}/act-{k}"],
        "netviz models": lambda k: [*netviz, "models"],
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for make in contenders.values():
        wall(make(-1), env)  # warm the file cache
    for k in range(args.repeats):
        for name, make in contenders.items():
            times[name].append(wall(make(k), env))
    base = statistics.median(times['python -c "import torch"'])
    print("| command | median s | ratio to import torch | target |")
    print("|---|---|---|---|")
    for name, t in times.items():
        m = statistics.median(t)
        print(f"| `{name}` | {m:.2f} | {m / base:.2f}x | {'' if name.startswith('python') else '<= 1.5x'} |")
    slowest = max((n for n in contenders if not n.startswith("python")), key=lambda n: statistics.median(times[n]))
    print(f"\nimports of `{slowest}` by top-level package (seconds, python -X importtime):")
    found = import_times(contenders[slowest](999), env)
    for name, secs in sorted(found.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {name:<14} {secs:.2f}")


if __name__ == "__main__":
    main()
