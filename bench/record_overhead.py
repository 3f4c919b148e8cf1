"""Issue 11's measurement: what records, verification and resume state cost inside one `anndl run`.

Runs ``python -m anndl run`` in-process on a challenge folder (default: the synthetic default in data/)
with the artifact layer's functions timed: record checks and writes (hashing every output file), and the
per-epoch resume state (every model and optimizer variable) with the atomic best-weights checkpoint.

Usage: python bench/record_overhead.py [--data DIR] [--out DIR] [--model scratch_resnet] [--profile smoke]
"""

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anndl.core import artifacts  # noqa: E402
from anndl import cli
from anndl.engine import train
from anndl.core.config import DATA_ROOT, SYNTHETIC_DEFAULT  # noqa: E402
from anndl.data import resolve_data_dir  # noqa: E402

SPENT = {"records (check, verify, write)": 0.0, "resume state + best checkpoint": 0.0}
_depth = {"n": 0}


def timed(module, name, bucket):
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        _depth["n"] += 1
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _depth["n"] -= 1
            if _depth["n"] == 0:  # nested calls are counted once, by the outermost
                SPENT[bucket] += time.perf_counter() - start

    setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--model", default="scratch_resnet")
    parser.add_argument("--profile", default="smoke")
    args = parser.parse_args()
    data = resolve_data_dir(args.data or DATA_ROOT, SYNTHETIC_DEFAULT)
    out = args.out or Path(tempfile.mkdtemp(prefix="anndl_overhead_"))
    for name in ("check", "complete", "load", "read_json"):
        timed(artifacts, name, "records (check, verify, write)")
    for name in ("save_state", "save_weights"):
        timed(train, name, "resume state + best checkpoint")
    start = time.perf_counter()
    code = cli.main(["run", "--data", str(data), "--out", str(out), "--model", args.model, "--profile", args.profile])
    total = time.perf_counter() - start
    print(f"\nanndl run --model {args.model} --profile {args.profile} on {data}: exit {code}, {total:.1f} s in all")
    for what, seconds in SPENT.items():
        print(f"  {what}: {seconds:.2f} s ({seconds / total:.2%} of the run)")


if __name__ == "__main__":
    main()
