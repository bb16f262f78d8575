"""OpenFeature provider: evaluates rollguard-controlled flags in-process, following the control topic.

Why in-process: a rollback must reach every request within the subscriber's poll interval, without a
round trip to a flag server; the provider evaluates a local, immutable :class:`FlagRollout` snapshot per
call and swaps it when a verified command arrives, emitting ``PROVIDER_CONFIGURATION_CHANGED`` so
applications can drop caches or log the switch.

    sub = ControlSubscriber(settings, verifier=Verifier.from_env())
    api.set_provider(RollguardProvider(sub, {"support-reply-model": FlagConfig("baseline", "canary")}))
    sub.start()
    api.get_client().get_string_value("support-reply-model", "baseline",
                                      EvaluationContext("user-42", {"tier": "premium"}))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from rollguard.client.flags import FlagConfig, FlagRollout, RolloutBook, bucket
from rollguard.contracts import Command, scope_label

if TYPE_CHECKING:
    from rollguard.client.subscriber import ControlState, ControlSubscriber

PROVIDER_NAME = "rollguard"
_Object = Sequence[FlagValueType] | Mapping[str, FlagValueType]


def segment_of(context: EvaluationContext | None) -> dict[str, str]:
    """Segment attributes from an evaluation context: scalar attributes as text (bools as true/false)."""
    if context is None:
        return {}
    out: dict[str, str] = {}
    for k, v in context.attributes.items():
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, str | int | float):
            out[k] = str(v)
    return out


class RollguardProvider(AbstractProvider):
    """OpenFeature provider for flags whose rollout rollguard controls.

    ``source`` is a :class:`ControlSubscriber` (hooked: every accepted command updates the provider, from
    the subscriber's thread) or a :class:`ControlState` (seeded once; feed later commands to
    :meth:`on_command`). Only flags in ``flags`` are served; others resolve to FLAG_NOT_FOUND.
    """

    def __init__(self, source: ControlSubscriber | ControlState | None,
                 flags: Mapping[str, FlagConfig]) -> None:
        super().__init__()
        self._book = RolloutBook(flags, self._changed)
        self._source = source
        if source is not None:
            self._book.bind(source)

    # ------------------------------------------------------------------------------------- lifecycle

    def get_metadata(self) -> Metadata:
        return Metadata(name=PROVIDER_NAME)

    def shutdown(self) -> None:
        """Unhooks from the subscriber; the subscriber itself belongs to the caller (close it yourself)."""
        self._book.unbind()

    def on_command(self, cmd: Command) -> bool:
        """Apply an accepted command (callers driving a bare ControlState); True if it changed a flag."""
        return self._book.apply(cmd) is not None

    def rollout(self, flag_key: str) -> FlagRollout | None:
        """The current rollout snapshot of a flag (for status pages and tests)."""
        return self._book.get(flag_key)

    def _changed(self, rollout: FlagRollout, cmd: Command) -> None:
        self.emit_provider_configuration_changed(ProviderEventDetails(
            flags_changed=[rollout.flag],
            message=f"{cmd.action.value} {scope_label(cmd.scope) or 'all segments'}",
            metadata={"command_id": cmd.command_id, "seq": cmd.seq, "action": cmd.action.value,
                      "scope": scope_label(cmd.scope)},
        ))

    # ------------------------------------------------------------------------------------ evaluation

    def _evaluate(self, flag_key: str,
                  context: EvaluationContext | None) -> FlagResolutionDetails[str] | None:
        """The served variant (value = variant name) or an error resolution; None for an unknown flag."""
        rollout = self._book.get(flag_key)
        if rollout is None:
            return None
        segment = segment_of(context)
        res = rollout.resolve(segment)
        meta: dict[str, bool | int | float | str] = {"weight": res.weight, "rule": res.rule}
        if rollout.last_command is not None:
            meta["last_command_id"] = rollout.last_command.command_id
        if res.command is not None:
            meta["command_id"] = res.command.command_id
            meta["scope"] = scope_label(res.command.scope)
        cfg = rollout.config
        if 0.0 < res.weight < 1.0:
            key = context.targeting_key if context is not None else None
            if not key:
                return FlagResolutionDetails(
                    cfg.baseline, error_code=ErrorCode.TARGETING_KEY_MISSING, reason=Reason.ERROR,
                    error_message=f"{flag_key} is split {res.weight:.4g}: bucketing needs a targeting key",
                    flag_metadata=meta)
            variant = cfg.candidate if bucket(flag_key, key) < res.weight else cfg.baseline
            reason = Reason.DEFAULT if res.command is None else Reason.SPLIT
        else:
            variant = cfg.candidate if res.weight >= 1.0 else cfg.baseline
            reason = Reason.DEFAULT if res.command is None else Reason.TARGETING_MATCH
        return FlagResolutionDetails(variant, reason=reason, variant=variant, flag_metadata=meta)

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: EvaluationContext | None = None
                               ) -> FlagResolutionDetails[str]:
        """The arm name served to this user (``FlagConfig.baseline`` or ``.candidate``)."""
        details = self._evaluate(flag_key, evaluation_context)
        if details is None:
            return _not_found(flag_key, default_value)
        return details

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: EvaluationContext | None = None
                                ) -> FlagResolutionDetails[bool]:
        """True when this user is served the candidate."""
        details = self._evaluate(flag_key, evaluation_context)
        if details is None:
            return _not_found(flag_key, default_value)
        rollout = self._book.get(flag_key)
        assert rollout is not None
        return FlagResolutionDetails(details.value == rollout.config.candidate, error_code=details.error_code,
                                     error_message=details.error_message, reason=details.reason,
                                     variant=details.variant, flag_metadata=details.flag_metadata)

    def resolve_integer_details(self, flag_key: str, default_value: int,
                                evaluation_context: EvaluationContext | None = None
                                ) -> FlagResolutionDetails[int]:
        return _type_mismatch(flag_key, default_value)

    def resolve_float_details(self, flag_key: str, default_value: float,
                              evaluation_context: EvaluationContext | None = None
                              ) -> FlagResolutionDetails[float]:
        return _type_mismatch(flag_key, default_value)

    def resolve_object_details(self, flag_key: str, default_value: _Object,
                               evaluation_context: EvaluationContext | None = None
                               ) -> FlagResolutionDetails[_Object]:
        return _type_mismatch(flag_key, default_value)


def _not_found(flag_key: str, default: Any) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(default, error_code=ErrorCode.FLAG_NOT_FOUND, reason=Reason.ERROR,
                                 error_message=f"rollguard does not serve flag {flag_key!r}")


def _type_mismatch(flag_key: str, default: Any) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(default, error_code=ErrorCode.TYPE_MISMATCH, reason=Reason.ERROR,
                                 error_message=f"{flag_key}: rollguard flags are string (variant) or boolean")


__all__ = ["FlagConfig", "RollguardProvider", "segment_of"]
