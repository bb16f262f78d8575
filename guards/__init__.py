"""rollguard.guards: pure validators over AI responses (no Kafka, no Faust, no contracts).

>>> from rollguard.guards import GuardItem, build_guard_set
>>> gs = build_guard_set(engine="re")
>>> [f.code for f in gs.check(GuardItem(output="I'm sorry, but I can't help with that."))]
['refusal.phrase']
"""

from .config import BUILTIN_GUARDS, ENTRY_POINT_GROUP
from .engine import HAVE_HYPERSCAN
from .guardset import GuardSet, build_guard_set
from .types import Finding, Guard, GuardConfigError, GuardItem, Severity

__all__ = [
    "BUILTIN_GUARDS",
    "ENTRY_POINT_GROUP",
    "HAVE_HYPERSCAN",
    "Finding",
    "Guard",
    "GuardConfigError",
    "GuardItem",
    "GuardSet",
    "Severity",
    "build_guard_set",
]
