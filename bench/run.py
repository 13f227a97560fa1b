"""`make bench`: run every benchmark and write bench/results/*.json."""

from __future__ import annotations

import json
import sys

from bench import api, backup, cache, jobs, load, ui

BENCHMARKS = {
    "api": api.run,
    "jobs": jobs.run,
    "ui": ui.run,
    "backup": backup.run,
    "load": load.run,
    "cache": cache.run,
}


def main(names: list[str]) -> None:
    selected = names or list(BENCHMARKS)
    unknown = sorted(set(selected) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(
            f"error: unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}"
        )
    for name in selected:
        print(f"== {name}", flush=True)
        print(json.dumps(BENCHMARKS[name](), indent=2), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
