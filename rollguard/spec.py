"""Rollout spec: the owned, explicit contract for one feature's rollout (YAML, validated by pydantic).

A bad spec is refused with the field path and the problem (``criteria.1.max_ratio: must be > 1``) so a
release owner can fix it before it goes live; ``rollguard spec check`` prints exactly those errors.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

ActionName = Literal["alert", "hold", "pause", "rollback"]

#: Metrics a criterion may name, with the bound kinds that make sense for each.
RATE_UP_METRICS = {"error_rate", "refusal_rate", "fallback_rate", "escalation_rate", "safety_failure_rate"}
RATE_DOWN_METRICS = {"task_success_rate"}
RATIO_METRICS = {"latency_p95_ms", "cost_per_request"}
COUNT_METRICS = {"safety_failures"}
#: Judged on joined outcome events, which only served (live) responses have.
OUTCOME_METRICS = {"escalation_rate", "task_success_rate"}
#: Paired shadow-vs-live metrics, judged in shadow stages; each takes max_increase (a rate, ms or USD).
SHADOW_METRICS = {"shadow_disagreement_rate", "shadow_guard_failure_rate", "shadow_latency_delta_ms",
                  "shadow_cost_delta_usd"}
_GUARD_RATE = re.compile(r"^guard\.[a-z0-9_]+\.rate$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``"30m"``, ``"2h"``, ``"45s"``, or seconds as a number."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    m = _DURATION.match(str(value))
    if not m:
        try:  # ISO 8601 ("PT10M"), which is how a spec's durations travel as JSON (`rollguard spec apply`)
            return TypeAdapter(timedelta).validate_python(value)
        except ValidationError:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 2h)") from None
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


class SpecError(ValueError):
    """A refused spec; ``problems`` lists ``(field path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "spec") -> None:
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"{source} refused:\n{lines}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage(_Model):
    """One step of the rollout, with the gates that must pass before the next."""

    name: str = Field(min_length=1, max_length=64)
    mode: Literal["shadow", "live"] = "live"
    weight: float | None = Field(default=None, ge=0, le=1)
    min_requests: int = Field(default=0, ge=0, description="per analysed segment, candidate arm")
    min_duration: timedelta | None = None
    max_duration: timedelta | None = Field(
        default=None, description="too little traffic by then: revert (LaunchDarkly-style minimum traffic)")
    segments: dict[str, list[str]] | None = None

    @field_validator("min_duration", "max_duration", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _weight_for_live(self) -> Stage:
        if self.mode == "live" and self.weight is None:
            raise ValueError("a live stage needs a weight (0..1)")
        if self.mode == "shadow" and self.weight not in (None, 0):
            raise ValueError("a shadow stage serves nothing: leave weight out")
        return self


class Criterion(_Model):
    """A metric, one bound, and the action its violation takes."""

    metric: str
    non_inferiority_margin: float | None = Field(default=None, ge=0, le=1)
    max_increase: float | None = Field(default=None, ge=0)
    max_ratio: float | None = Field(default=None, gt=1)
    max_count: int | None = Field(default=None, ge=0)
    alpha: float | None = Field(default=None, gt=0, lt=0.5)
    action: ActionName = "pause"
    kind: Literal["guardrail", "signal"] = "guardrail"
    min_samples: int = Field(default=200, ge=1, description="per arm, before the criterion may decide")
    per_segment: bool = True
    owner: str | None = None

    @property
    def bound_name(self) -> str:
        for name in ("non_inferiority_margin", "max_increase", "max_ratio", "max_count"):
            if getattr(self, name) is not None:
                return name
        return "alpha"  # srm

    @model_validator(mode="after")
    def _one_bound(self) -> Criterion:
        bounds = [n for n in ("non_inferiority_margin", "max_increase", "max_ratio", "max_count")
                  if getattr(self, n) is not None]
        m = self.metric
        if m == "srm":
            if bounds:
                raise ValueError("srm takes only alpha (default 0.001)")
        elif len(bounds) != 1:
            raise ValueError(f"exactly one bound per criterion, got {bounds or 'none'}")
        else:
            want = (
                "max_increase" if m in RATE_UP_METRICS or m in SHADOW_METRICS or _GUARD_RATE.match(m)
                else "non_inferiority_margin" if m in RATE_DOWN_METRICS
                else "max_ratio" if m in RATIO_METRICS
                else "max_count" if m in COUNT_METRICS
                else None
            )
            if want is None:
                known = sorted(RATE_UP_METRICS | RATE_DOWN_METRICS | RATIO_METRICS | COUNT_METRICS | SHADOW_METRICS)
                raise ValueError(f"unknown metric {m!r}; known: {', '.join(known)}, guard.<name>.rate, srm")
            if bounds[0] != want:
                raise ValueError(f"metric {m} takes {want}, not {bounds[0]}")
            rate = m.endswith("_rate") or m.endswith(".rate")
            if want == "max_increase" and rate and (self.max_increase or 0) > 1:
                raise ValueError(f"max_increase of a rate is a fraction in [0, 1], got {self.max_increase}")
        if self.kind == "signal" and self.action in ("pause", "rollback"):
            raise ValueError("signal criteria can only alert or hold; make it a guardrail to pause/roll back")
        return self


class DriftSpec(_Model):
    """Online drift detection (``rollguard.drift_monitor``): what a candidate-only drift does, and its timing."""

    action: Literal["alert", "pause", "rollback"] = "alert"
    tolerance: timedelta = Field(default=timedelta(minutes=5),
                                 description="onsets this close count as baseline and candidate drifting together")
    quiet: timedelta = Field(default=timedelta(minutes=2), description="no detection this long ends an episode")
    cooldown: timedelta = Field(default=timedelta(minutes=15), description="no repeat alert this soon after")

    @field_validator("tolerance", "quiet", "cooldown", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v)


class RolloutSpec(_Model):
    """A feature's rollout: arms, segments, stages and the criteria that stop it."""

    feature: str = Field(min_length=1, max_length=128)
    flag: str = Field(min_length=1, max_length=128)
    unit: Literal["prompt", "model", "retrieval", "pipeline"] = "model"
    owner: str | None = None
    baseline: str = "baseline"
    candidate: str = "canary"
    segment_by: list[str] = Field(default_factory=list, max_length=8)
    stages: list[Stage] = Field(min_length=1)
    criteria: list[Criterion] = Field(default_factory=list)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    recent_epoch: int = Field(
        default=2000, ge=0,
        description="candidate responses per recent epoch: each criterion is also tested on the current epoch "
                    "alone (tumbling, alpha spent across epochs), so a regression that starts late in a long "
                    "stage is not diluted by its healthy start; 0 tests the whole stage only")
    outcome_delay: timedelta = Field(default=timedelta(0), description="judge outcomes only this old")
    on_critical_guard: ActionName | None = Field(
        default=None, description="act on a critical guard finding in the candidate at once")
    guards: dict[str, Any] | None = None
    drift: DriftSpec | None = Field(default=None, description="watch for drift; None: detectors off")

    @field_validator("outcome_delay", mode="before")
    @classmethod
    def _delay(cls, v: Any) -> Any:
        return parse_duration(v)

    @model_validator(mode="after")
    def _coherent(self) -> RolloutSpec:
        if self.baseline == self.candidate:
            raise ValueError("baseline and candidate must be different variants")
        names = [s.name for s in self.stages]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"stage names must be unique: {sorted(dup)}")
        weights = [s.weight for s in self.stages if s.mode == "live" and s.weight is not None]
        if weights != sorted(weights):
            raise ValueError(f"live stage weights must not decrease: {weights}")
        if len(set(self.segment_by)) != len(self.segment_by):
            raise ValueError("segment_by lists an attribute twice")
        for s in self.stages:
            for attr in s.segments or {}:
                if attr not in self.segment_by:
                    raise ValueError(f"stage {s.name!r} expands by {attr!r}, which is not in segment_by")
        return self

    @property
    def version(self) -> str:
        """Content hash: decisions and audit records name the exact spec they applied."""
        body = orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(body).hexdigest()[:12]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def stage_index(self, name: str) -> int:
        return [s.name for s in self.stages].index(name)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<spec>"
        msg = str(err["msg"]).removeprefix("Value error, ")
        out.append((loc, msg))
    return out


def parse_spec(data: Any, source: str = "spec") -> RolloutSpec:
    """Validate a mapping into a spec, or raise :class:`SpecError` naming each bad field."""
    if not isinstance(data, dict):
        raise SpecError([("<spec>", f"expected a mapping, got {type(data).__name__}")], source)
    try:
        spec = RolloutSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc), source) from None
    if spec.guards is not None:
        _check_guards(spec.guards, source)
    return spec


def _check_guards(config: dict[str, Any], source: str) -> None:
    from rollguard.guards import GuardConfigError, build_guard_set

    try:
        build_guard_set(config)
    except GuardConfigError as exc:
        raise SpecError([(f"guards.{exc.field}".replace("guards.guards.", "guards."), exc.problem)],
                        source) from None


def load_spec(path: str | Path) -> RolloutSpec:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise SpecError([("<yaml>", str(exc).replace("\n", " "))], str(p)) from None
    except OSError as exc:
        raise SpecError([("<file>", str(exc))], str(p)) from None
    return parse_spec(data, str(p))


def load_spec_dir(path: str | Path) -> dict[str, RolloutSpec]:
    """All ``*.yaml``/``*.yml`` specs in a directory, keyed by feature; duplicates are refused."""
    specs: dict[str, RolloutSpec] = {}
    for p in sorted(Path(path).glob("*.y*ml")):
        spec = load_spec(p)
        if spec.feature in specs:
            raise SpecError([("feature", f"{spec.feature!r} is specified twice (in {p})")], str(p))
        specs[spec.feature] = spec
    return specs


def load_specs(path: str | Path) -> dict[str, RolloutSpec]:
    p = Path(path)
    if p.is_dir():
        return load_spec_dir(p)
    spec = load_spec(p)
    return {spec.feature: spec}
