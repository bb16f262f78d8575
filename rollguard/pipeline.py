"""The two step functions both the Faust agents and ``rollguard replay`` call.

``IngestFold.process`` takes one raw record (bytes, as Kafka delivered it) and returns what must be sent at
once (DLQ records, critical guard alerts); ``IngestFold.flush`` drains the folded partial aggregates, one
record per feature. ``Analyzer.apply`` merges one partial into the feature's windowed state, judges the
rollout and returns commands, alerts, audit records and metric snapshots. Nothing here touches Kafka, so a
back-test over a file reaches the same decisions as the live worker on the same events.
"""

from __future__ import annotations

import logging
import math
import uuid
import zlib
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from pydantic import ValidationError

from rollguard import policy
from rollguard.analysis import (
    Finding,
    Scope,
    SegmentKey,
    epoch_alpha,
    judge,
    parse_segment_key,
    scope_text,
    scopes_of,
    segment_key,
    stage_alpha,
    with_alpha,
)
from rollguard.contracts import (
    PARTIAL_SCHEMA,
    REQUEST_SCHEMA,
    RESPONSE_SCHEMA,
    Alert,
    ContractError,
    ControlRequest,
    DLQRecord,
    OutcomeEvent,
    ResponseEvent,
    Severity,
    decode,
    encode,
)
from rollguard.detectors.aggregates import VariantStats
from rollguard.detectors.drift import script_of
from rollguard.detectors.shadow import agreement
from rollguard.drift_monitor import DriftConfig, DriftMonitor, to_alert
from rollguard.guards import Finding as GuardFinding
from rollguard.guards import GuardItem, GuardSet, build_guard_set
from rollguard.policy import Decision, RolloutState
from rollguard.signing import Signer
from rollguard.spec import COUNT_METRICS, Criterion, RolloutSpec

log = logging.getLogger(__name__)

SHADOW_SUFFIX = "@shadow"
#: Per (segment, arm, window) and flush, ingest ships the numbers of this many events (bottom-k by a hash of
#: the event id: deterministic, order-independent, mergeable) so drift detectors see a fixed-rate sample.
SAMPLE_PER_KEY = 4
SAMPLE_FIELDS = ("t", "latency_ms", "cost_usd", "input_tokens", "output_tokens", "output_chars", "prompt_chars",
                 "script", "error", "refused", "fallback", "guard_failed")
OVERFLOW_SEGMENT = "_overflow"
_NO_GUARDS: frozenset[str] = frozenset()
_NEG_INF = -math.inf
#: Partial ids remembered per feature to recognise a re-delivered message (covers minutes of flushes).
SEEN_PARTIALS = 4096
#: Raw bytes of a bad record kept in its DLQ record. The DLQ record carries them base64-encoded (x4/3) and
#: the broker's default message.max.bytes is ~1 MB: keeping more would make the DLQ publish itself fail.
DLQ_MAX_VALUE_BYTES = 256 * 1024
DLQ_MAX_KEY_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Emit:
    """A record to publish: ``kind`` names the topic (dlq, alerts, partials, control, decisions, metrics)."""

    kind: str
    key: bytes | None
    value: bytes


def arm_of(variant: str, mode: str) -> str:
    """Shadow responses form their own arm, so a shadow candidate is never mixed with served traffic."""
    return variant if mode == "live" else variant + SHADOW_SUFFIX


class SpecBook:
    """The rollout specs in force, by feature, with each feature's compiled guard set cached."""

    def __init__(self, specs: Mapping[str, RolloutSpec] | None = None, *, max_scan_chars: int = 65_536) -> None:
        self.specs: dict[str, RolloutSpec] = dict(specs or {})
        self._guards: dict[str, tuple[RolloutSpec, str, GuardSet]] = {}  # feature -> (spec, version, set)
        self._default: GuardSet | None = None

    def get(self, feature: str) -> RolloutSpec | None:
        return self.specs.get(feature)

    def put(self, spec: RolloutSpec) -> None:
        self.specs[spec.feature] = spec

    def guards(self, feature: str) -> GuardSet:
        """Runs per response: keyed on the spec *object*, since ``spec.version`` hashes the whole spec (~10 µs);
        a new object with the same content keeps the compiled set."""
        spec = self.specs.get(feature)
        if spec is None or spec.guards is None:
            if self._default is None:
                self._default = build_guard_set(None)
            return self._default
        cached = self._guards.get(feature)
        if cached is None or cached[0] is not spec:
            version = spec.version
            gs = cached[2] if cached is not None and cached[1] == version else build_guard_set(spec.guards)
            cached = self._guards[feature] = (spec, version, gs)
        return cached[2]


@dataclass
class IngestCounters:
    records: int = 0
    responses: int = 0
    outcomes: int = 0
    dlq: int = 0
    critical_alerts: int = 0
    outcomes_joined: int = 0
    outcomes_pending: int = 0
    outcome_duplicates: int = 0
    orphan_outcomes: int = 0
    segment_overflow: int = 0
    scan_truncated: int = 0
    join_evicted: int = 0
    shadow_pairs: int = 0
    unpaired_shadows: int = 0
    replayed_skipped: int = 0
    replayed_outcomes_skipped: int = 0
    recalled: int = 0


@dataclass(slots=True)
class _PairSide:
    """What a shadow comparison needs from one side of a request (bounded text, no raw text kept long)."""

    output: str
    failed: bool
    latency_ms: float | None
    cost_usd: float | None
    ts: float
    seg: SegmentKey = ""
    arm: str = ""
    window: int = 0


#: Text kept per side for agreement; long outputs are compared on their first 4 KB.
PAIR_TEXT_CHARS = 4096


@dataclass(slots=True)
class _JoinEntry:
    feature: str
    seg: SegmentKey
    arm: str
    window: int
    ts: float


class IngestFold:
    """Per-partition(-set) fold: decode, guard, join, and accumulate mergeable partial aggregates."""

    def __init__(self, specs: SpecBook, *, window_s: int = 60, max_event_bytes: int = 1_048_576,
                 max_scan_chars: int = 65_536, max_segments_per_feature: int = 10_000,
                 join_ttl_s: float = 6 * 3600, max_join_entries: int = 500_000) -> None:
        self.specs = specs
        self.window_s = window_s
        self.max_event_bytes = max_event_bytes
        self.max_scan_chars = max_scan_chars
        self.max_segments = max_segments_per_feature
        self.join_ttl_s = join_ttl_s
        self.max_join_entries = max_join_entries
        self.counters = IngestCounters()
        self._fold: dict[str, dict[tuple[SegmentKey, str, int], VariantStats]] = defaultdict(dict)
        self._samples: dict[str, dict[tuple[SegmentKey, str, int], list[tuple[int, list[Any]]]]] = defaultdict(dict)
        self._source: dict[str, dict[str, list[int]]] = defaultdict(dict)
        self._max_ts: dict[str, float] = {}
        self._segments: dict[str, set[SegmentKey]] = defaultdict(set)
        # feature -> (spec it was built for, segment items -> key): formatting a key costs ~0.8 µs a response
        self._seg_keys: dict[str, tuple[RolloutSpec | None, dict[tuple[tuple[str, str], ...], SegmentKey]]] = {}
        self._shadow_plans: dict[str, tuple[RolloutSpec, bool]] = {}  # feature -> (spec, has a shadow stage)
        self._responses: OrderedDict[str, _JoinEntry] = OrderedDict()
        # request -> (ts, [(outcome, "topic:partition", offset)]) waiting for its response
        self._pending: OrderedDict[str, tuple[float, list[tuple[OutcomeEvent, str, int]]]] = OrderedDict()
        self._seen_outcomes: OrderedDict[str, float] = OrderedDict()
        # per input partition, waiting outcomes in arrival order (offset, ts, request): waiting_outcomes() drops
        # the ones that joined or aged out from the head, so asking costs O(1) amortised, not O(waiting)
        self._waiting: dict[str, deque[tuple[int, float, str]]] = {}
        self._live_sides: OrderedDict[tuple[str, str], _PairSide] = OrderedDict()  # (feature, request) -> live
        self._shadow_sides: OrderedDict[tuple[str, str], _PairSide] = OrderedDict()  # waiting for the live one
        self._shadowed: set[str] = set()  # features that have (or plan) shadow traffic
        self._published: dict[str, dict[str, int]] = {}  # feature -> "topic:partition" -> last published
        self._joined: dict[str, dict[str, list[int]]] = defaultdict(dict)  # feature -> tp -> outcome offsets
        self._joined_before: dict[str, set[int]] = {}  # tp -> outcome offsets in published partials
        self._clock = 0.0  # event-time clock: the largest ts seen

    # ------------------------------------------------------------------ per record
    def process(self, raw: bytes | None, *, topic: str, partition: int, offset: int,
                key: bytes | None = None) -> list[Emit]:
        """Fold one record; returns what must go out now (DLQ record, critical alerts). Never raises on data."""
        self.counters.records += 1
        try:
            event = decode(raw, max_bytes=self.max_event_bytes)
            if isinstance(event, ResponseEvent):
                return self._response(event, topic, partition, offset)
            return self._outcome(event, topic, partition, offset)
        except ContractError as exc:
            return [self._dlq(raw, exc.reason, topic, partition, offset, key)]
        except Exception as exc:  # a bug must not stop the stream: the record goes to the DLQ, loudly
            log.exception("unexpected error on %s[%d]@%d", topic, partition, offset)
            return [self._dlq(raw, f"internal error: {type(exc).__name__}: {str(exc)[:200]}",
                              topic, partition, offset, key)]

    def _dlq(self, raw: bytes | None, reason: str, topic: str, partition: int, offset: int,
             key: bytes | None) -> Emit:
        self.counters.dlq += 1
        value = raw or b""
        kept = value[:DLQ_MAX_VALUE_BYTES]
        key = key[:DLQ_MAX_KEY_BYTES] if key else key
        rec = DLQRecord(reason=reason, topic=topic, partition=partition, offset=offset, key=key, value=kept,
                        size=len(value), truncated=len(kept) < len(value))
        return Emit("dlq", key, rec.to_bytes())

    def _note_source(self, feature: str, topic: str, partition: int, offset: int, ts: float) -> None:
        src = self._source[feature]
        tp = f"{topic}:{partition}"
        rng = src.get(tp)
        if rng is None:
            src[tp] = [offset, offset]
        else:
            if offset < rng[0]:
                rng[0] = offset
            if offset > rng[1]:
                rng[1] = offset
        if ts > self._max_ts.get(feature, _NEG_INF):
            self._max_ts[feature] = ts
        if ts > self._clock:
            self._clock = ts

    def _segment(self, feature: str, segment: Mapping[str, str], spec: RolloutSpec | None) -> SegmentKey:
        items = tuple(segment.items())
        cache = self._seg_keys.get(feature)
        if cache is None or cache[0] is not spec:
            cache = self._seg_keys[feature] = (spec, {})
        key = cache[1].get(items)
        if key is not None:
            return key
        key = segment_key(segment, spec.segment_by if spec is not None else sorted(segment))
        known = self._segments[feature]
        if key not in known:
            if len(known) >= self.max_segments:
                self.counters.segment_overflow += 1
                return OVERFLOW_SEGMENT  # never cached: each one is counted
            known.add(key)
        if len(cache[1]) < 4 * self.max_segments:  # bounded: at most 4 spellings per admitted segment
            cache[1][items] = key
        return key

    def _response(self, ev: ResponseEvent, topic: str, partition: int, offset: int) -> list[Emit]:
        self.counters.responses += 1
        spec = self.specs.get(ev.feature)
        ts = ev.ts.timestamp()
        seg = self._segment(ev.feature, ev.segment, spec)
        arm = arm_of(ev.variant, ev.mode)
        window = int(ts // self.window_s) * self.window_s
        if self._already_published(ev.feature, topic, partition, offset):
            # re-read after a restart: counted already; keep only what later outcomes need to join
            if ev.mode == "live":
                self._remember_response(ev.request_id, _JoinEntry(ev.feature, seg, arm, window, ts))
            return []
        self._note_source(ev.feature, topic, partition, offset, ts)

        findings = self.specs.guards(ev.feature).check(self._guard_item(ev))
        if findings:
            failed: Collection[str] = {f.guard for f in findings}
            critical = [f for f in findings if f.severity == "critical"]
        else:  # the usual case: nothing to collect
            failed, critical = _NO_GUARDS, []
        refused = ev.refused is True or "refusal" in failed

        stats = self._stats(ev.feature, seg, arm, window)
        stats.add_response(
            latency_ms=ev.latency_ms, cost_usd=ev.cost_usd, input_tokens=ev.usage.input_tokens,
            output_tokens=ev.usage.output_tokens, output_chars=len(ev.output), error=ev.error is not None,
            fallback=ev.fallback, refused=refused, critical=bool(critical), guards=failed,
        )
        self._sample(ev, seg, arm, window, ts, refused, bool(failed))
        out: list[Emit] = []
        if critical:
            self.counters.critical_alerts += 1
            out.append(self._guard_alert(ev, critical))
        if ev.mode == "live":
            self._remember_response(ev.request_id, _JoinEntry(ev.feature, seg, arm, window, ts))
        if ev.mode == "shadow" or ev.feature in self._shadowed or (spec is not None and self._plans_shadow(spec)):
            any_failed = any(f.severity != "info" for f in findings)
            self._pair(ev, _PairSide(ev.output[:PAIR_TEXT_CHARS], any_failed, ev.latency_ms, ev.cost_usd, ts,
                                     seg, arm, window))
        self._expire()
        return out

    def _plans_shadow(self, spec: RolloutSpec) -> bool:
        plan = self._shadow_plans.get(spec.feature)
        if plan is None or plan[0] is not spec:
            plan = self._shadow_plans[spec.feature] = (spec, any(s.mode == "shadow" for s in spec.stages))
        return plan[1]

    def _pair(self, ev: ResponseEvent, side: _PairSide) -> None:
        """Pair a shadow response with the live response to the same request, whichever arrives first."""
        key = (ev.feature, ev.request_id)
        if ev.mode == "shadow":
            self._shadowed.add(ev.feature)
            live = self._live_sides.pop(key, None)
            if live is None:
                self._shadow_sides[key] = side
                return
            shadow_side = side
        else:
            waiting = self._shadow_sides.pop(key, None)
            if waiting is None:
                self._live_sides[key] = side
                if len(self._live_sides) > self.max_join_entries:
                    self._live_sides.popitem(last=False)
                    self.counters.join_evicted += 1
                return
            live, shadow_side = side, waiting
        agree = agreement(shadow_side.output, live.output)
        self.counters.shadow_pairs += 1
        self._stats(ev.feature, shadow_side.seg, shadow_side.arm, shadow_side.window).add_pair(
            exact=agree.exact, normalized=agree.normalized, similar=agree.similar,
            candidate_failed=shadow_side.failed, baseline_failed=live.failed,
            latency_delta=_delta(shadow_side.latency_ms, live.latency_ms),
            cost_delta=_delta(shadow_side.cost_usd, live.cost_usd))

    def _sample(self, ev: ResponseEvent, seg: SegmentKey, arm: str, window: int, ts: float, refused: bool,
                failed: bool) -> None:
        h = zlib.crc32(ev.event_id.encode())
        samples = self._samples[ev.feature]
        k = (seg, arm, window)
        box = samples.get(k)
        if box is None:
            box = samples[k] = []
        elif len(box) >= SAMPLE_PER_KEY:
            hashes = [e[0] for e in box]
            worst = max(hashes)
            if h >= worst:
                return
            del box[hashes.index(worst)]  # the first maximum
        box.append((h, [round(ts, 3), ev.latency_ms, ev.cost_usd, ev.usage.input_tokens, ev.usage.output_tokens,
                        len(ev.output), len(ev.input), script_of(ev.input), ev.error is not None, refused,
                        ev.fallback, failed]))

    def _guard_item(self, ev: ResponseEvent) -> GuardItem:
        inp, outp = ev.input, ev.output
        lim = self.max_scan_chars
        if len(inp) > lim or len(outp) > lim:
            self.counters.scan_truncated += 1
            inp, outp = inp[:lim], outp[:lim]
        return GuardItem(
            output=outp, input=inp, latency_ms=ev.latency_ms, input_tokens=ev.usage.input_tokens,
            output_tokens=ev.usage.output_tokens, cost_usd=ev.cost_usd, error=ev.error, fallback=ev.fallback,
            refused=ev.refused,
        )

    def _guard_alert(self, ev: ResponseEvent, findings: list[GuardFinding]) -> Emit:
        codes = sorted({f.code for f in findings})
        alert = Alert(
            severity=Severity.CRITICAL, kind="guard", feature=ev.feature, variant=ev.variant, segment=ev.segment,
            title=f"critical guard finding in {ev.variant} ({ev.mode}): {', '.join(codes)}",
            evidence={"findings": [
                {"guard": f.guard, "code": f.code, "field": f.field, "spans": [list(s) for s in f.spans],
                 "excerpt": f.excerpt} for f in findings[:20]
            ], "mode": ev.mode},
            request_id=ev.request_id,
        )
        return Emit("alerts", ev.feature.encode(), alert.to_bytes())

    def _stats(self, feature: str, seg: SegmentKey, arm: str, window: int) -> VariantStats:
        fold = self._fold[feature]
        k = (seg, arm, window)
        s = fold.get(k)
        if s is None:
            s = fold[k] = VariantStats()
        return s

    def recall(self, raw: bytes | None) -> bool:
        """Re-learn a response for the outcome join only (no counting): at start-up the runtime replays the
        recent part of the pairs topic below the committed offset, so outcomes that arrive after a restart
        or a hand-over still find the response they belong to. Returns whether it was a live response."""
        try:
            ev = decode(raw, max_bytes=self.max_event_bytes, expect=(RESPONSE_SCHEMA,))
        except ContractError:
            return False
        if ev.mode != "live":
            return False
        ts = ev.ts.timestamp()
        seg = self._segment(ev.feature, ev.segment, self.specs.get(ev.feature))
        window = int(ts // self.window_s) * self.window_s
        self._remember_response(ev.request_id, _JoinEntry(ev.feature, seg, arm_of(ev.variant, ev.mode), window, ts))
        self.counters.recalled += 1
        return True

    def already_published(self, published: Mapping[str, Mapping[str, int]],
                          joined: Mapping[str, Iterable[int]] | None = None) -> None:
        """What published partials already hold, read back from the partials topic at start-up (or when
        partitions are assigned): ``published`` is ``{feature: {"topic:partition": last offset}}`` and
        ``joined`` is ``{"topic:partition": outcome offsets}`` as listed in those partials.

        A partial is one message per feature, so it is all-or-nothing; batches are published in order, so
        every response of that feature up to its last published offset is in, and re-read ones are skipped
        (but remembered for the outcome join). Outcomes are skipped by exact offset, never by range: one may
        have waited for its response across flushes, so only the offsets a partial lists as joined are known
        to be counted. Calling this again merges (marks only rise; offsets accumulate)."""
        for feature, tps in published.items():
            mine = self._published.setdefault(feature, {})
            for tp, off in tps.items():
                mine[tp] = max(mine.get(tp, -1), off)
        for tp, offs in (joined or {}).items():
            self._joined_before.setdefault(tp, set()).update(offs)

    def _already_published(self, feature: str, topic: str, partition: int, offset: int) -> bool:
        if not self._published:
            return False
        tp = f"{topic}:{partition}"
        mark = self._published.get(feature, {}).get(tp)
        if mark is None or offset > mark:
            return False
        self.counters.replayed_skipped += 1
        return True

    # ------------------------------------------------------------------ outcome join
    def _remember_response(self, request_id: str, entry: _JoinEntry) -> None:
        self._responses[request_id] = entry
        pending = self._pending.pop(request_id, None)
        if pending is not None:
            self.counters.outcomes_pending -= len(pending[1])
            for oc, tp, off in pending[1]:
                topic, _, part = tp.rpartition(":")
                self._note_source(entry.feature, topic, int(part), off, entry.ts)
                self._apply_outcome(entry, oc, tp, off)
        if len(self._responses) > self.max_join_entries:
            self._responses.popitem(last=False)
            self.counters.join_evicted += 1

    def _outcome(self, oc: OutcomeEvent, topic: str, partition: int, offset: int) -> list[Emit]:
        self.counters.outcomes += 1
        if oc.event_id in self._seen_outcomes:
            self.counters.outcome_duplicates += 1
            return []
        ts = oc.ts.timestamp()
        self._seen_outcomes[oc.event_id] = ts
        if len(self._seen_outcomes) > self.max_join_entries:
            self._seen_outcomes.popitem(last=False)
        tp = f"{topic}:{partition}"
        if self._joined_before:
            before = self._joined_before.get(tp)
            if before is not None and offset in before:
                # re-read after a restart, and a published partial already holds it: counted once, there
                before.discard(offset)
                self.counters.replayed_outcomes_skipped += 1
                return []
        entry = self._responses.get(oc.request_id)
        if entry is not None:
            self._note_source(entry.feature, topic, partition, offset, ts)
            self._apply_outcome(entry, oc, tp, offset)
        else:
            self._pending.setdefault(oc.request_id, (ts, []))[1].append((oc, tp, offset))
            waiting = self._waiting.get(tp)
            if waiting is None:
                waiting = self._waiting[tp] = deque()
            waiting.append((offset, ts, oc.request_id))
            if len(waiting) > self.max_join_entries:  # bounded like the join: the oldest is no longer held for
                waiting.popleft()
            self.counters.outcomes_pending += 1
            if ts > self._clock:
                self._clock = ts
        self._expire()
        return []

    def _apply_outcome(self, entry: _JoinEntry, oc: OutcomeEvent, tp: str, offset: int) -> None:
        self.counters.outcomes_joined += 1
        joined = self._joined[entry.feature]
        offs = joined.get(tp)
        if offs is None:
            joined[tp] = [offset]
        else:
            offs.append(offset)
        self._stats(entry.feature, entry.seg, entry.arm, entry.window).add_outcome(
            task_success=oc.task_success, escalated=oc.escalated, feedback=oc.feedback)

    def _expire(self) -> None:
        horizon = self._clock - self.join_ttl_s
        while self._pending:
            ts, ocs = next(iter(self._pending.values()))
            if ts >= horizon and len(self._pending) <= self.max_join_entries:
                break
            self._pending.popitem(last=False)
            self.counters.orphan_outcomes += len(ocs)
            self.counters.outcomes_pending -= len(ocs)
        while self._responses:
            entry = next(iter(self._responses.values()))
            if entry.ts >= horizon:
                break
            self._responses.popitem(last=False)
        for sides in (self._live_sides, self._shadow_sides):
            while sides and next(iter(sides.values())).ts < horizon:
                sides.popitem(last=False)
                if sides is self._shadow_sides:
                    self.counters.unpaired_shadows += 1
        while self._seen_outcomes:
            if next(iter(self._seen_outcomes.values())) >= horizon:
                break
            self._seen_outcomes.popitem(last=False)

    # ------------------------------------------------------------------ flush
    def flush(self) -> list[Emit]:
        """Drain the fold: one partial record per feature, keyed by feature (tiny volume)."""
        out = []
        for feature, fold in self._fold.items():
            if not fold:
                continue
            samples = self._samples.get(feature, {})
            body = {
                "schema": PARTIAL_SCHEMA,
                "id": uuid.uuid4().hex,
                "feature": feature,
                "source": self._source.get(feature, {}),
                "max_ts": self._max_ts.get(feature),
                # the outcomes folded in, exactly: a restarted fold skips these and only these when it
                # reads them again (one may have waited for its response across many flushes)
                "joined": {tp: offset_runs(offs) for tp, offs in self._joined.get(feature, {}).items()},
                "entries": [[seg, arm, window, s.to_dict(), [row for _, row in samples.get((seg, arm, window), [])]]
                            for (seg, arm, window), s in fold.items()],
            }
            out.append(Emit("partials", feature.encode(), orjson.dumps(body)))
        self._fold.clear()
        self._samples.clear()
        self._source.clear()
        self._joined.clear()
        return out

    def waiting_outcomes(self, *, within_s: float = 300.0) -> dict[str, int]:
        """Lowest offset per input partition of an outcome still waiting for its response, among those that
        arrived within ``within_s`` (event time) of the newest record. A runtime that commits no further than
        this re-reads them after a crash instead of losing them; older waiting ones are not held for (their
        response is probably never coming, and holding would make every restart re-read hours)."""
        horizon = self._clock - within_s
        low: dict[str, int] = {}
        for tp, waiting in self._waiting.items():
            while waiting:
                off, ts, request = waiting[0]
                entry = self._pending.get(request)
                if ts >= horizon and entry is not None and any(o == off and t == tp for _, t, o in entry[1]):
                    low[tp] = off  # offsets of one partition arrive in order: the head is the lowest
                    break
                waiting.popleft()
        return low

    @property
    def pending(self) -> int:
        return sum(len(f) for f in self._fold.values())


# ---------------------------------------------------------------------------------------------- analyze


@dataclass
class FeatureRuntime:
    """Everything the analysis keeps for one feature (serialised into the changelog-backed table)."""

    rollout: RolloutState
    stage_stats: dict[str, dict[SegmentKey, VariantStats]] = field(default_factory=dict)  # arm -> seg -> stats
    windows: dict[int, dict[str, dict[SegmentKey, VariantStats]]] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)
    clock: float = 0.0
    partials: int = 0
    duplicate_partials: int = 0
    overlapping_partials: int = 0
    seen_partials: list[str] = field(default_factory=list)  # ids of the latest partials merged
    # derived, rebuilt on restore: per arm, per view (scope) totals, and when each view was last tested
    maturing: dict[int, dict[str, dict[SegmentKey, VariantStats]]] = field(default_factory=dict)  # window ->
    views: dict[str, dict[Scope, VariantStats]] = field(default_factory=dict)
    attrs: list[str] | None = None
    retest: dict[tuple[str, Scope], int] = field(default_factory=dict)
    # the current recent epoch (see RolloutSpec.recent_epoch): its index is checkpointed, its data is not
    # (a restored runtime starts the next epoch, with its own alpha)
    epoch: int = 1
    recent_stats: dict[str, dict[SegmentKey, VariantStats]] = field(default_factory=dict)
    recent_views: dict[str, dict[Scope, VariantStats]] = field(default_factory=dict)
    recent_retest: dict[tuple[str, Scope], int] = field(default_factory=dict)

    def add(self, seg: SegmentKey, arm: str, s: VariantStats, attrs: list[str]) -> None:
        """Fold one partial entry into the stage totals, the recent epoch, and every view it belongs to."""
        if self.attrs != attrs:
            self.rebuild_views(attrs)
        self.stage_stats.setdefault(arm, {}).setdefault(seg, VariantStats()).merge(s)
        views = self.views.setdefault(arm, {})
        for scope in scopes_of(parse_segment_key(seg), attrs):
            v = views.get(scope)
            if v is None:
                v = views[scope] = VariantStats()
            v.merge(s)
        # the recent epoch is judged on the overall view (its segments only serve attribution)
        self.recent_stats.setdefault(arm, {}).setdefault(seg, VariantStats()).merge(s)
        self.recent_views.setdefault(arm, {}).setdefault((), VariantStats()).merge(s)

    def rebuild_views(self, attrs: list[str]) -> None:
        self.attrs = list(attrs)
        self.views = {}
        self.retest = {}
        self.recent_views = {}
        self.recent_retest = {}
        for arm, segs in self.stage_stats.items():
            views = self.views.setdefault(arm, {})
            for seg, s in segs.items():
                for scope in scopes_of(parse_segment_key(seg), attrs):
                    views.setdefault(scope, VariantStats()).merge(s)
        for arm, segs in self.recent_stats.items():
            for s in segs.values():
                self.recent_views.setdefault(arm, {}).setdefault((), VariantStats()).merge(s)

    def next_epoch(self) -> None:
        """Close the recent epoch: the next one starts empty and tests at its own (smaller) alpha."""
        self.epoch += 1
        self.recent_stats = {}
        self.recent_views = {}
        self.recent_retest = {}

    def new_stage(self) -> None:
        """A stage change starts new tests: the cumulative view restarts from the stage's first event."""
        self.stage_stats = {}
        self.maturing = {}
        self.views = {}
        self.retest = {}
        self.epoch = 1
        self.recent_stats = {}
        self.recent_views = {}
        self.recent_retest = {}
        self.rollout.verdicts = {}

    def hold_outcomes(self, window: int, seg: SegmentKey, arm: str, outcomes: VariantStats) -> None:
        self.maturing.setdefault(window, {}).setdefault(arm, {}).setdefault(seg, VariantStats()).merge(outcomes)

    def release_outcomes(self, horizon: float, window_s: int, attrs: list[str]) -> None:
        """Outcomes of windows that ended at least the spec's outcome delay ago now count."""
        for w in sorted(self.maturing):
            if w + window_s > horizon:
                break
            for arm, segs in self.maturing.pop(w).items():
                for seg, s in segs.items():
                    self.add(seg, arm, s, attrs)

    def to_bytes(self) -> bytes:
        """Compressed JSON (zlib level 1 shrinks per-segment stats ~5x; checkpoints are written often)."""
        return b"Z" + zlib.compress(self._json(), 1)

    def _json(self) -> bytes:
        return orjson.dumps({
            "rollout": self.rollout.to_json(),
            "stage_stats": {a: {k: s.to_dict() for k, s in segs.items()} for a, segs in self.stage_stats.items()},
            "windows": {str(w): {a: {k: s.to_dict() for k, s in segs.items()} for a, segs in arms.items()}
                        for w, arms in self.windows.items()},
            "maturing": {str(w): {a: {k: s.to_dict() for k, s in segs.items()} for a, segs in arms.items()}
                         for w, arms in self.maturing.items()},
            "watermarks": self.watermarks, "clock": self.clock, "partials": self.partials,
            "duplicate_partials": self.duplicate_partials, "overlapping_partials": self.overlapping_partials,
            "seen_partials": self.seen_partials, "epoch": self.epoch,
        })

    @classmethod
    def from_bytes(cls, raw: bytes) -> FeatureRuntime:
        d = orjson.loads(zlib.decompress(raw[1:]) if raw[:1] == b"Z" else raw)
        return cls(
            rollout=RolloutState.from_json(d["rollout"]),
            stage_stats={a: {k: VariantStats.from_dict(s) for k, s in segs.items()}
                         for a, segs in d["stage_stats"].items()},
            windows={int(w): {a: {k: VariantStats.from_dict(s) for k, s in segs.items()}
                              for a, segs in arms.items()} for w, arms in d["windows"].items()},
            maturing={int(w): {a: {k: VariantStats.from_dict(s) for k, s in segs.items()}
                               for a, segs in arms.items()} for w, arms in d.get("maturing", {}).items()},
            watermarks=d["watermarks"], clock=d["clock"], partials=d["partials"],
            duplicate_partials=d["duplicate_partials"], overlapping_partials=d["overlapping_partials"],
            seen_partials=d.get("seen_partials", []),
            epoch=int(d.get("epoch", 0)) + 1,  # the saved epoch's data is gone: go on with a fresh one
        )


class Analyzer:
    """Merges partials per feature, judges the rollout, and emits what the policy decides."""

    def __init__(self, specs: SpecBook, *, signer: Signer | None = None, window_s: int = 60,
                 lateness_s: int = 120, drift: DriftMonitor | None = None) -> None:
        self.specs = specs
        self.signer = signer
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.features: dict[str, FeatureRuntime] = {}
        #: online drift detectors, fed every merged entry; judged once per partial for specs with ``drift``
        self.drift = drift if drift is not None else DriftMonitor(specs.get, DriftConfig())
        #: hook for per-entry consumers (drift monitoring): (feature, segment, arm, stats, sample rows)
        self.on_entry: Callable[[str, SegmentKey, str, VariantStats, list[list[Any]]], None] | None = None

    def runtime(self, feature: str) -> FeatureRuntime:
        rt = self.features.get(feature)
        if rt is None:
            rt = self.features[feature] = FeatureRuntime(RolloutState(feature))
        return rt

    def restore(self, feature: str, raw: bytes | None) -> None:
        if raw:
            self.features[feature] = FeatureRuntime.from_bytes(raw)

    def apply(self, raw: bytes, *, now: datetime | None = None) -> list[Emit]:
        """Merge one partial and judge its feature. Malformed partials are logged and skipped."""
        try:
            p = orjson.loads(raw)
            if isinstance(p, dict) and p.get("schema") == REQUEST_SCHEMA:
                return self._request(p, now=now)
            feature = p["feature"]
            entries = p["entries"]
            source: dict[str, list[int]] = p.get("source") or {}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("skipping malformed partial (%d bytes)", len(raw))
            return []
        rt = self.runtime(feature)
        if not self._admit(rt, source, p.get("id")):
            return []
        spec = self.specs.get(feature)
        attrs = spec.segment_by if spec is not None else []
        delay = spec.outcome_delay.total_seconds() if spec is not None else 0.0
        if p.get("max_ts") is not None:
            rt.clock = max(rt.clock, float(p["max_ts"]))
        watch = spec is not None and spec.drift is not None
        for seg, arm, window, data, *rest in entries:
            s = VariantStats.from_dict(data)
            if watch:
                self.drift.observe(feature, seg, arm, s, rest[0] if rest else [])
            if self.on_entry is not None:
                self.on_entry(feature, seg, arm, s, rest[0] if rest else [])
            # too late for its window's snapshot, it still counts towards the stage totals
            if window >= rt.clock - self.lateness_s - self.window_s or window in rt.windows:
                rt.windows.setdefault(int(window), {}).setdefault(arm, {}).setdefault(seg, VariantStats()).merge(s)
            if delay > 0 and s.outcomes and window + self.window_s + delay > rt.clock:
                s, held = s.split_outcomes()  # judged once every outcome of the window had time to arrive
                rt.hold_outcomes(int(window), seg, arm, held)
            rt.add(seg, arm, s, attrs)
        if rt.maturing:
            rt.release_outcomes(rt.clock - delay, self.window_s, attrs)
        rt.partials += 1
        out = self._close_windows(feature, rt)
        if spec is not None:
            if watch:
                out.extend(self._drift(spec, rt, now=now))
            out.extend(self.evaluate(spec, rt, now=now))
        return out

    def _drift(self, spec: RolloutSpec, rt: FeatureRuntime, *, now: datetime | None) -> list[Emit]:
        """Drift alerts for SREs; a candidate-only regression under ``drift.action`` pause/rollback acts."""
        assert spec.drift is not None
        d = spec.drift
        act = d.action if d.action in ("pause", "rollback") else None
        events = self.drift.evaluate(spec, rt.clock, action=act, tolerance_s=d.tolerance.total_seconds())
        out = [Emit("alerts", spec.feature.encode(), to_alert(spec.feature, e).to_bytes()) for e in events]
        acting = [e.finding() for e in events if e.phase == "alert" and e.action is not None]
        if acting:
            if rt.rollout.spec_version != spec.version:
                policy.start(rt.rollout, spec, rt.clock)
            out.extend(self._publish(policy.decide(rt.rollout, spec, cast(list[Finding], acting), now=now,
                                                   event_time=datetime.fromtimestamp(rt.clock, UTC),
                                                   issued_by="drift")))
        return out

    def _request(self, body: dict[str, Any], *, now: datetime | None) -> list[Emit]:
        try:
            req = ControlRequest.model_validate(body)
        except ValidationError as exc:
            log.warning("refused control request: %s", exc.errors(include_url=False)[:1])
            return []
        spec = self.specs.get(req.feature)
        if spec is None:
            log.warning("control request for %r, which has no rollout spec", req.feature)
            return []
        return self.request(spec, self.runtime(req.feature), req, now=now)

    def _admit(self, rt: FeatureRuntime, source: Mapping[str, list[int]], partial_id: str | None = None) -> bool:
        """At-least-once input: skip a partial merged before (same id: a re-delivered message); count overlaps.

        Offsets alone cannot tell a re-delivered partial from a new one: after a restart, ingest legitimately
        publishes outcomes below the watermark (ones that were still waiting for their response). Re-read
        records are kept out at the source (``IngestFold.already_published``); ids catch re-delivery."""
        if partial_id is not None:
            if partial_id in rt.seen_partials:
                rt.duplicate_partials += 1
                return False
            rt.seen_partials.append(partial_id)
            del rt.seen_partials[:-SEEN_PARTIALS]
        if not source:
            return True
        fresh = False
        overlap = False
        for tp, (lo, hi) in source.items():
            mark = rt.watermarks.get(tp, -1)
            if hi > mark:
                fresh = True
            if lo <= mark:
                overlap = True
        if not fresh and partial_id is None:  # legacy partials without an id: offsets are all we have
            rt.duplicate_partials += 1
            return False
        if overlap:
            rt.overlapping_partials += 1
        for tp, (_lo, hi) in source.items():
            rt.watermarks[tp] = max(rt.watermarks.get(tp, -1), hi)
        return True

    def _close_windows(self, feature: str, rt: FeatureRuntime) -> list[Emit]:
        out = []
        for w in sorted(rt.windows):
            if w + self.window_s + self.lateness_s > rt.clock:
                break
            arms = rt.windows.pop(w)
            out.append(Emit("metrics", feature.encode(), orjson.dumps(snapshot(feature, w, self.window_s, arms))))
        return out

    def evaluate(self, spec: RolloutSpec, rt: FeatureRuntime, *, now: datetime | None = None) -> list[Emit]:
        """Judge the current stage, act on violations, and promote when every gate passes."""
        st = rt.rollout
        if st.spec_version != spec.version:
            policy.start(st, spec, rt.clock)
        stage = spec.stage(st.stage)
        event_time = datetime.fromtimestamp(rt.clock, UTC)
        cand_arm = spec.candidate + (SHADOW_SUFFIX if stage.mode == "shadow" else "")
        cand = rt.stage_stats.get(cand_arm, {})
        base = rt.stage_stats.get(spec.baseline, {})
        criteria = policy.stage_criteria(spec, stage)
        if spec.on_critical_guard is not None:
            criteria.append(Criterion(metric="safety_failures", max_count=0, action=spec.on_critical_guard,
                                      min_samples=1))
        decisions: list[Decision] = []
        overall = rt.views.get(cand_arm, {}).get((), VariantStats())
        if cand and base:
            vc, vb = rt.views.get(cand_arm, {}), rt.views.get(spec.baseline, {})
            views = {scope: (vc[scope], vb.get(scope, VariantStats())) for scope in vc}
            def expected(scope: Scope) -> float | None:
                """The promised split: uniform, except in an expansion stage (only within expanded segments)."""
                if not stage.segments:
                    return stage.weight
                return st.weight(scope) if any(k in stage.segments for k, _ in scope) else None

            recent = spec.recent_epoch > 0
            j = judge(with_alpha(criteria, spec.alpha, lambda a: stage_alpha(a, recent=recent)), views, cand, base,
                      spec.alpha, expected_weight=expected, retest=rt.retest, in_force=st.held)
            for f in j.findings:
                ev = f.evidence()
                st.verdicts[f"{f.criterion.metric}|{scope_text(f.scope)}"] = {
                    k: ev[k] for k in ("outcome", "canary", "baseline", "n", "n_baseline", "p", "interval")}
            actions = list(j.actions)
            if recent:
                actions.extend(self._recent(spec, rt, cand_arm, criteria, expected, shadow=stage.mode == "shadow"))
            decisions = policy.decide(st, spec, actions, now=now, event_time=event_time)
        last = spec.stages[-1].name == stage.name
        # input-only drift: the population shifted; do not promote on it (harm criteria above still act)
        if not decisions and not last and not self.drift.holding(spec.feature, ()):
            n = overall.pairs if stage.mode == "shadow" else overall.requests
            st.gates = policy.check_gates(st, spec, stage, candidate_n=n, clock=rt.clock)
            if not st.gates["pending"]:
                decisions = policy.promote(st, spec, clock=rt.clock, reason=f"every gate of {stage.name} passed",
                                           evidence={"metric": "gates", **st.gates}, now=now, event_time=event_time)
                rt.new_stage()
            else:
                decisions = policy.revert_for_traffic(st, spec, stage, candidate_n=n, clock=rt.clock, now=now,
                                                      event_time=event_time)
        return self._publish(decisions)

    def _recent(self, spec: RolloutSpec, rt: FeatureRuntime, cand_arm: str, criteria: list[Criterion],
                expected: Callable[[Scope], float | None], *, shadow: bool) -> list[Finding]:
        """The same criteria on the current recent epoch alone, overall view only, at that epoch's alpha; then
        roll the epoch over once it holds ``recent_epoch`` candidate responses. A late regression of everyone is
        what the whole-stage test is slow to see (its healthy start dilutes it); a segment's regression is the
        segment views' job, so the epoch acts on everyone only when no single segment value explains it. Hard
        limits and the SRM check are whole-stage only."""
        vc = rt.recent_views.get(cand_arm, {})
        vb = rt.recent_views.get(spec.baseline, {})
        if () not in vc or () not in vb:
            return []
        tested = [c for c in criteria if c.metric not in COUNT_METRICS and c.metric != "srm"]
        views: dict[Scope, tuple[VariantStats, VariantStats]] = {(): (vc[()], vb[()])}
        k = rt.epoch
        j = judge(with_alpha(tested, spec.alpha, lambda a: epoch_alpha(a, k)), views,
                  rt.recent_stats.get(cand_arm, {}), rt.recent_stats.get(spec.baseline, {}), spec.alpha,
                  expected_weight=expected, retest=rt.recent_retest, in_force=rt.rollout.held, robust_overall=True)
        overall = vc.get((), VariantStats())
        if (overall.pairs if shadow else overall.requests) >= spec.recent_epoch:
            rt.next_epoch()
        return j.actions

    def request(self, spec: RolloutSpec, rt: FeatureRuntime, req: ControlRequest,
                *, now: datetime | None = None) -> list[Emit]:
        """An operator's pause/resume/rollback/promote, sequenced with the feature's own decisions."""
        st = rt.rollout
        if st.spec_version != spec.version:
            policy.start(st, spec, rt.clock)
        stage_before = st.stage
        scope = tuple(sorted(req.scope.items()))
        decisions = policy.manual(st, spec, req.action, scope, reason=req.reason, by=req.requested_by,
                                  request_id=req.request_id, clock=rt.clock, now=now,
                                  event_time=datetime.fromtimestamp(rt.clock, UTC))
        if st.stage != stage_before:
            rt.new_stage()
        return self._publish(decisions)

    def _publish(self, decisions: Iterable[Decision]) -> list[Emit]:
        out = []
        for d in decisions:
            if d.command is not None:
                cmd = self.signer.sign(d.command) if self.signer else d.command
                out.append(Emit("control", cmd.control_key.encode(), encode(cmd)))
            out.append(Emit("alerts", d.alert.feature.encode(), d.alert.to_bytes()))
            out.append(Emit("decisions", d.record.feature.encode(), d.record.to_bytes()))
        return out


def offset_runs(offsets: Iterable[int]) -> list[list[int]]:
    """Sorted offsets as inclusive ``[first, last]`` runs (outcomes of one partition mostly come in runs).

    >>> offset_runs([7, 3, 4, 5, 9])
    [[3, 5], [7, 7], [9, 9]]
    """
    runs: list[list[int]] = []
    for off in sorted(set(offsets)):
        if runs and off == runs[-1][1] + 1:
            runs[-1][1] = off
        else:
            runs.append([off, off])
    return runs


def expand_runs(runs: Iterable[Iterable[int]], *, at_least: int = 0) -> Iterable[int]:
    """The offsets of ``offset_runs`` output, from ``at_least`` on (what can still be re-read)."""
    for lo, hi in runs:
        yield from range(max(lo, at_least), hi + 1)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def snapshot(feature: str, window: int, window_s: int,
             arms: Mapping[str, Mapping[SegmentKey, VariantStats]]) -> dict[str, Any]:
    """A closed window's per-segment, per-arm metrics for dashboards and replay comparisons."""
    rows = []
    for arm, segs in arms.items():
        for seg, s in segs.items():
            rows.append({
                "arm": arm, "segment": parse_segment_key(seg), "requests": s.requests,
                "error_rate": _ratio(s.errors, s.requests), "refusal_rate": _ratio(s.refusals, s.requests),
                "escalation_rate": _ratio(s.escalations, s.escalation_n),
                "task_success_rate": _ratio(s.successes, s.success_n),
                "latency_p50_ms": _finite(s.latency.quantile(0.5)), "latency_p95_ms": _finite(s.latency.quantile(0.95)),
                "cost_per_request": _finite(s.cost.mean), "guard_failures": s.guard_failures,
            })
    return {"schema": "rollguard.metrics/v1", "feature": feature,
            "window_start": datetime.fromtimestamp(window, UTC).isoformat(), "window_s": window_s, "rows": rows}


def _ratio(x: int, n: int) -> float | None:
    return round(x / n, 6) if n else None


def _finite(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None
