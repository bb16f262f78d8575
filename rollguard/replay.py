"""Back-test a rollout spec over recorded traffic with the same step functions the live worker runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from rollguard.pipeline import Analyzer, Emit, IngestFold, SpecBook
from rollguard.signing import Signer


@dataclass
class ReplayResult:
    """Everything the run would have published, by kind, in order."""

    emits: dict[str, list[bytes]] = field(default_factory=dict)
    records: int = 0

    def add(self, emits: Iterable[Emit]) -> None:
        for e in emits:
            self.emits.setdefault(e.kind, []).append(e.value)

    def decoded(self, kind: str) -> list[dict[str, object]]:
        return [orjson.loads(v) for v in self.emits.get(kind, [])]


def read_jsonl(path: str | Path) -> Iterator[bytes]:
    """Raw lines of a JSONL recording (bytes, exactly as they would sit on the topic)."""
    with open(path, "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def replay(records: Iterable[bytes], specs: SpecBook, *, flush_every: int = 500, window_s: int = 60,
           signer: Signer | None = None, analyzer: Analyzer | None = None,
           on_progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Fold ``records`` and analyse a partial every ``flush_every`` records (the worker flushes on time)."""
    fold = IngestFold(specs, window_s=window_s)
    analyzer = analyzer or Analyzer(specs, signer=signer, window_s=window_s)
    result = ReplayResult()

    def flush() -> None:
        for partial in fold.flush():
            result.add([partial])
            result.add(analyzer.apply(partial.value))

    for i, raw in enumerate(records):
        result.add(fold.process(raw, topic="replay", partition=0, offset=i))
        result.records += 1
        if (i + 1) % flush_every == 0:
            flush()
            if on_progress:
                on_progress(i + 1)
    flush()
    return result
