"""`make bench`: run every bench/bench_*.py (or those named on the command line) and print their tables.

Each benchmark module has `main() -> None` and prints its own tables; it starts and stops
whatever it measures. Benchmarks never run in the test suite.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "optio.settings")
    names = argv or sorted(p.stem for p in HERE.glob("bench_*.py"))
    failed = 0
    for name in names:
        name = name.removesuffix(".py").split("/")[-1]
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        try:
            importlib.import_module(name).main()
        except Exception as exc:  # one broken benchmark should not hide the others' figures
            failed += 1
            print(f"{name} failed: {exc.__class__.__name__}: {exc}", flush=True)
        print(f"({name}: {time.monotonic() - started:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
