"""Online drift and anomaly detection for rollouts (river wrappers), numbers in, verdicts out.

Pure library: no Kafka, Faust or rollguard-core imports. The implementation is split over
``drift_*.py``; import everything from here. See ``docs/detectors.md`` for the method,
parameters and measured detection delay / false-alarm rates.

Detectors (river style: ``update(x, t=None)`` then read ``drift_detected``, ``in_drift``,
``since``, ``since_time``, ``estimate``):

* :class:`BinaryRateDrift` - ADWIN on 0/1 outcome streams, regression direction only.
* :class:`LogScaleShift` - Page-Hinkley on standardised log latency / cost.
* :class:`DistributionShift` - KSWIN on block means of output length / tokens.
* :class:`MultivariateAnomaly` - HalfSpaceTrees anomaly-rate drift over request numbers.
* :class:`CategoricalMixShift` - G-test + Jensen-Shannon on a categorical input mix.

Decisions: :func:`classify` / :class:`DriftClassifier` (traffic shift vs candidate regression
vs input shift), :class:`EpisodeGate` (one alert per episode, cool-down, recovery) and
:class:`DetectorBank` (the whole set for one segment x variant).
"""

from __future__ import annotations

from .drift_bank import (
    BINARY_METRICS,
    INPUT_METRICS,
    LOG_METRICS,
    OUTPUT_METRICS,
    BankConfig,
    DetectorBank,
    classify_banks,
)
from .drift_base import Direction, DriftState, EpisodeLike, EpisodeTracker
from .drift_categorical import OTHER, CategoricalMixShift, length_bucket, script_of
from .drift_episodes import DriftClassifier, DriftKind, EpisodeGate, GateEvent, Verdict, classify
from .drift_multivariate import FEATURES, MultivariateAnomaly
from .drift_univariate import BinaryRateDrift, DistributionShift, LogScaleShift

__all__ = [
    "BINARY_METRICS",
    "FEATURES",
    "INPUT_METRICS",
    "LOG_METRICS",
    "OTHER",
    "OUTPUT_METRICS",
    "BankConfig",
    "BinaryRateDrift",
    "CategoricalMixShift",
    "DetectorBank",
    "Direction",
    "DistributionShift",
    "DriftClassifier",
    "DriftKind",
    "DriftState",
    "EpisodeGate",
    "EpisodeLike",
    "EpisodeTracker",
    "GateEvent",
    "LogScaleShift",
    "MultivariateAnomaly",
    "Verdict",
    "classify",
    "classify_banks",
    "length_bucket",
    "script_of",
]
