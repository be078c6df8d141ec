"""Run the chaos harness by hand, bigger than in CI.

    python -m tests.chaos --backend both --jobs 6000 --window 300 --workers 4 --processes 3

Prints the seed first (``--seed`` repeats a schedule), then one line per backend; exits
1 if any invariant was violated, listing the violations and where the logs are.
"""

from __future__ import annotations

import argparse
import random
import sys

from .faults import ALL_KINDS, DESCRIPTIONS
from .harness import ChaosConfig, run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Real tasktrail workers under injected faults; checks the invariants.",
        epilog="fault kinds: " + "; ".join(f"{k}: {d}" for k, d in DESCRIPTIONS.items()),
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seed", type=int, help="default: a random one (printed)")
    parser.add_argument("--jobs", type=int, default=6000)
    parser.add_argument("--window", type=float, default=300.0, help="seconds of faults")
    parser.add_argument("--workers", type=int, default=4, help="worker clients")
    parser.add_argument("--processes", type=int, default=3, help="children per worker")
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--faults-per-minute", type=float, default=20.0)
    parser.add_argument(
        "--kinds", help=f"comma-separated fault kinds (default: all of {', '.join(ALL_KINDS)})"
    )
    parser.add_argument("--no-netns", action="store_true", help="no network partition")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every fault")
    options = parser.parse_args(argv)
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(10**6)
    print(f"chaos: seed {seed} (repeat the schedule with --seed {seed})", flush=True)
    kinds = None
    if options.kinds:
        kinds = tuple(k.strip() for k in options.kinds.split(",") if k.strip())
        unknown = sorted(set(kinds) - set(ALL_KINDS))
        if unknown:
            parser.error(f"unknown fault kinds: {', '.join(unknown)}")
    backends = ("sqlite", "postgres") if options.backend == "both" else (options.backend,)
    failed = False
    for backend in backends:
        config = ChaosConfig(
            backend=backend,
            seed=seed,
            jobs=options.jobs,
            window=options.window,
            workers=options.workers,
            processes=options.processes,
            lease=options.lease,
            faults_per_minute=options.faults_per_minute,
            kinds=kinds,
            netns=not options.no_netns,
            keep=options.keep,
            verbose=options.verbose,
        )
        result = run_chaos(config)
        print(result.line(), flush=True)
        if not result.ok:
            failed = True
            for violation in result.figures.violations[:50]:
                print(f"  violation: {violation}", file=sys.stderr)
            print(f"  logs: {result.run_dir}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
