from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from rollguard.cli import app

SPECS = Path(__file__).resolve().parents[3] / "rollguard" / "specs"
runner = CliRunner()


def test_simulate_then_replay_finds_the_injected_regression(tmp_path: Path) -> None:
    rec = tmp_path / "traffic.jsonl"
    r = runner.invoke(app, ["simulate", "-o", str(rec), "--events", "20000", "--seed", "3",
                            "--regress", "escalation_rate=0.15@tier=premium"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["replay", str(rec), "--spec", str(SPECS), "--json"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and '"tier":"premium"' in lines[0] and '"rollback"' in lines[0]


def test_spec_check_refuses_bad_spec_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((SPECS / "support-reply.yaml").read_text().replace("max_ratio: 1.25", "max_ratio: 0.5"))
    r = runner.invoke(app, ["spec", "check", str(bad)])
    assert r.exit_code == 1
    assert "criteria.4.max_ratio" in r.output
    ok = runner.invoke(app, ["spec", "check", str(SPECS)])
    assert ok.exit_code == 0 and "support-reply" in ok.output
