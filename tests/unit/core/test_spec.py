from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rollguard.spec import SpecError, load_spec, parse_spec

SPEC = Path(__file__).resolve().parents[3] / "rollguard" / "specs" / "support-reply.yaml"


def base() -> dict:
    return yaml.safe_load(SPEC.read_text())


def test_shipped_spec_is_valid() -> None:
    spec = load_spec(SPEC)
    assert spec.feature == "support-reply" and spec.segment_by == ["tier", "geo", "use_case"]
    assert len(spec.version) == 12


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value.problems


def test_design_sketch_spec_parses() -> None:
    spec = parse_spec(yaml.safe_load("""
feature: support-reply
flag: support-reply-model
unit: model
baseline: baseline
candidate: canary
segment_by: [tier, geo, use_case]
stages:
  - {name: shadow,   mode: shadow, min_requests: 2000}
  - {name: canary-1, weight: 0.01, min_requests: 1000, min_duration: 30m}
  - {name: canary-5, weight: 0.05}
  - {name: expand,   weight: 0.25, segments: {tier: [free, pro]}}
  - {name: full,     weight: 1.0}
criteria:
  - {metric: task_success_rate, non_inferiority_margin: 0.02, action: rollback}
  - {metric: escalation_rate,   max_increase: 0.01,           action: pause}
  - {metric: latency_p95_ms,    max_ratio: 1.2,               action: pause}
  - {metric: cost_per_request,  max_ratio: 1.1,               action: pause}
  - {metric: safety_failures,   max_count: 0,                 action: rollback}
  - {metric: srm,               alpha: 0.001,                 action: pause}
alpha: 0.05
"""))
    assert spec.stage("canary-1").min_duration.total_seconds() == 1800


@pytest.mark.parametrize(("mutate", "field", "text"), [
    (lambda d: d["criteria"].append({"metric": "latency_p95_ms", "max_ratio": 0.9}), "criteria.7.max_ratio",
     "greater than 1"),
    (lambda d: d["criteria"].append({"metric": "latency_p95_ms", "max_increase": 0.1}), "criteria.7",
     "takes max_ratio"),
    (lambda d: d["criteria"].append({"metric": "vibes", "max_ratio": 2}), "criteria.7", "unknown metric"),
    (lambda d: d["criteria"].append({"metric": "error_rate", "max_increase": 0.1, "kind": "signal",
                                     "action": "rollback"}), "criteria.7", "signal criteria"),
    (lambda d: d["criteria"].append({"metric": "error_rate"}), "criteria.7", "exactly one bound"),
    (lambda d: d["stages"].append({"name": "more"}), "stages.2", "needs a weight"),
    (lambda d: d["stages"][0].update(min_duration="soon"), "stages.0.min_duration", "not a duration"),
    (lambda d: d.update(candidate="baseline"), "<spec>", "must be different"),
    (lambda d: d.update(unit="vibes"), "unit", "prompt"),
    (lambda d: d.update(colour="blue"), "colour", "Extra inputs"),
    (lambda d: d["stages"].append(d["stages"][0]), "<spec>", "unique"),
])
def test_bad_spec_names_field_and_problem(mutate, field: str, text: str) -> None:  # type: ignore[no-untyped-def]
    data = base()
    mutate(data)
    probs = problems(data)
    assert any(path == field and text in msg for path, msg in probs), probs


def test_not_a_mapping() -> None:
    assert problems([1, 2])[0][0] == "<spec>"  # type: ignore[arg-type]


def test_spec_survives_its_json_form() -> None:
    """`rollguard spec apply` ships specs as JSON; durations come back from ISO 8601."""
    import orjson

    spec = load_spec(SPEC)
    again = parse_spec(orjson.loads(orjson.dumps(spec.model_dump(mode="json"))))
    assert again == spec and again.version == spec.version
