"""Run the crash/restart harness by hand: ``python -m tests.faults.crash --kills 10``.

Streams a seeded workload (with one injected premium regression) through a real worker on the broker at
``--bootstrap`` (default $ROLLGUARD_BOOTSTRAP or 127.0.0.1:9092), SIGKILLs it at seeded random points and
restarts it each time, then compares the recovered analysis state with the ground truth. Exit status 0 when
nothing was lost, the overcount stayed within bounds and exactly the expected commands took effect once.
"""

from __future__ import annotations

import argparse
import json
import sys

from tests.faults.harness import SHARED_BOOTSTRAP, CrashReport, overcount_within_bounds, run_crash


def verdict(r: CrashReport) -> list[str]:
    problems = []
    if r.lost:
        problems.append(f"{r.lost} responses lost")
    if r.lost_outcomes:
        problems.append(f"{r.lost_outcomes} outcomes lost")
    if not overcount_within_bounds(r.duplicated, r.duplicated_outcomes, r.reread_responses, r.reread_outcomes,
                                   r.responses):
        problems.append(f"overcount {r.duplicated}+{r.duplicated_outcomes} beyond the re-read window "
                        f"{r.reread_responses}+{r.reread_outcomes}")
    if not r.remerge_matches:
        problems.append("checkpointed state differs from the partials re-merged offline")
    if r.seen != r.expected:
        problems.append(f"commands expected {r.expected}, in force {r.seen}")
    if r.accepted_live != r.commands_expected or r.accepted_fresh != r.commands_expected:
        problems.append(f"effective commands {r.accepted_live} (live) / {r.accepted_fresh} (fresh), "
                        f"expected {r.commands_expected}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--responses", type=int, default=30_000)
    ap.add_argument("--rate", type=float, default=350.0, help="responses/s produced")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bootstrap", default=SHARED_BOOTSTRAP)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    r = run_crash(kills=args.kills, responses=args.responses, seed=args.seed, rate=args.rate,
                  bootstrap=args.bootstrap, say=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps(r.as_dict(), indent=2, default=str) if args.json else r.line())
    problems = verdict(r)
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
