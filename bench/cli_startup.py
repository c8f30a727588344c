"""`judgelab --help` wall time against a bare `python -c pass` (the floor), same run.

Target: judgelab --help <= 1.0 s. Usage: python bench/cli_startup.py [--repeats N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from common import summary, timed, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    judgelab = shutil.which("judgelab")
    if judgelab is None:
        sys.exit("judgelab is not on PATH: pip install -e .")

    def run(cmd: list[str]) -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    baseline = summary(timed(lambda: run([sys.executable, "-c", "pass"]), args.repeats))
    help_ = summary(timed(lambda: run([judgelab, "--help"]), args.repeats))
    ratio = help_["median_s"] / baseline["median_s"]
    print(f"python -c pass    median {baseline['median_s'] * 1000:.0f} ms (baseline)")
    print(f"judgelab --help   median {help_['median_s'] * 1000:.0f} ms  "
          f"= {ratio:.1f}x baseline; target <= 1000 ms: "
          f"{'met' if help_['median_s'] <= 1.0 else 'MISSED'}")
    path = write_results("cli_startup", {"baseline_python_pass": baseline, "judgelab_help": help_,
                                         "ratio_vs_baseline": ratio, "target_s": 1.0})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
