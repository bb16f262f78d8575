"""A tiny JSON-logic evaluator for the subset FlagdWriter emits (if, and, ==, var, fractional), following
flagd's fractional: murmur3_32(flagKey + targetingKey) as int32, |h| / MaxInt32 scaled by the total weight."""

from __future__ import annotations

from typing import Any

_MAX_INT32 = 2**31 - 1


def murmur3_32(data: bytes, seed: int = 0) -> int:
    c1, c2, h = 0xCC9E2D51, 0x1B873593, seed & 0xFFFFFFFF
    n = len(data) // 4 * 4
    for i in range(0, n, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * c1) & 0xFFFFFFFF
        k = ((k << 15) | (k >> 17)) & 0xFFFFFFFF
        k = (k * c2) & 0xFFFFFFFF
        h ^= k
        h = ((h << 13) | (h >> 19)) & 0xFFFFFFFF
        h = (h * 5 + 0xE6546B64) & 0xFFFFFFFF
    tail, k = data[n:], 0
    for i in reversed(range(len(tail))):
        k = (k << 8) | tail[i]
    if tail:
        k = (k * c1) & 0xFFFFFFFF
        k = ((k << 15) | (k >> 17)) & 0xFFFFFFFF
        k = (k * c2) & 0xFFFFFFFF
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def _fractional(args: list[Any], data: dict[str, Any], flag_key: str) -> str:
    key = f"{flag_key}{data.get('targetingKey', '')}"
    h = murmur3_32(key.encode())
    signed = h - 2**32 if h >= 2**31 else h
    total = sum(w for _, w in args)
    point = abs(signed) / _MAX_INT32 * total
    cum = 0.0
    for variant, weight in args:
        cum += weight
        if point < cum:
            return str(variant)
    return str(args[-1][0])


def evaluate(rule: Any, data: dict[str, Any], flag_key: str) -> Any:
    if not isinstance(rule, dict):
        return rule
    (op, args), = rule.items()
    if op == "var":
        return data.get(args)
    if op == "==":
        a, b = (evaluate(x, data, flag_key) for x in args)
        return a == b
    if op == "and":
        return all(evaluate(x, data, flag_key) for x in args)
    if op == "if":
        for i in range(0, len(args) - 1, 2):
            if evaluate(args[i], data, flag_key):
                return evaluate(args[i + 1], data, flag_key)
        return evaluate(args[-1], data, flag_key) if len(args) % 2 else None
    if op == "fractional":
        return _fractional(args, data, flag_key)
    raise ValueError(f"operator {op!r} not in the subset")


def resolve(doc: dict[str, Any], flag_key: str, data: dict[str, Any]) -> str:
    """What flagd would serve: the targeting result if it names a variant, else the default variant."""
    flag = doc["flags"][flag_key]
    result = evaluate(flag.get("targeting", {}), data, flag_key) if flag.get("targeting") else None
    return str(result) if result in flag["variants"] else str(flag["defaultVariant"])
