"""Crash and restart: SIGKILL the worker ten times mid-stream and keep the books against ground truth."""

from __future__ import annotations

import json
from pathlib import Path

from tests.faults.crash import verdict
from tests.faults.harness import run_crash


def test_ten_sigkills_lose_nothing_count_nothing_twice_and_apply_one_command(broker: str, tmp_path: Path) -> None:
    r = run_crash(kills=10, responses=30_000, seed=7, bootstrap=broker, log_dir=tmp_path, say=print)
    print(r.line())
    (tmp_path / "crash-report.json").write_text(json.dumps(r.as_dict(), indent=2, default=str))
    assert r.kills >= 10 and r.restarts == r.kills
    assert r.kills_mid_input >= 5, "kills should land while input is still flowing"
    assert r.lost == 0 and r.lost_outcomes == 0, r.books
    # exact, not just bounded: re-read responses are skipped up to the published mark, re-read outcomes by the
    # exact offsets published partials list as joined, and commits never pass an outcome still waiting
    assert r.duplicated == 0 and r.duplicated_outcomes == 0, r.line()
    assert r.expected == [("rollback", {"tier": "premium"})]
    assert verdict(r) == [], r.line()
