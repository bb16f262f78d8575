"""Runtime settings: one pydantic model read from the environment, passed to every Kafka client.

Kafka security settings (SASL/SSL) live here once and are translated for each client library
(confluent-kafka's librdkafka names, Faust's aiokafka credentials), so no client can be started
without them when they are configured.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Topics(BaseModel):
    """Topic names; a prefix lets several installations share one cluster."""

    model_config = ConfigDict(frozen=True)
    prefix: str = "rollguard"

    def name(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    @property
    def pairs(self) -> str:
        return self.name("pairs")

    @property
    def outcomes(self) -> str:
        return self.name("outcomes")

    @property
    def partials(self) -> str:
        return self.name("partials")

    @property
    def control(self) -> str:
        return self.name("control")

    @property
    def alerts(self) -> str:
        return self.name("alerts")

    @property
    def metrics(self) -> str:
        return self.name("metrics")

    @property
    def dlq(self) -> str:
        return self.name("dlq")

    @property
    def decisions(self) -> str:
        return self.name("decisions")

    @property
    def rollouts(self) -> str:
        return self.name("rollouts")


class KafkaSecurity(BaseModel):
    """SASL/SSL settings, shared by every client rollguard starts."""

    model_config = ConfigDict(frozen=True)
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def librdkafka(self) -> dict[str, Any]:
        """Settings in confluent-kafka (librdkafka) names."""
        conf: dict[str, Any] = {"security.protocol": self.protocol}
        if self.protocol.startswith("SASL"):
            conf["sasl.mechanisms"] = self.sasl_mechanism or "PLAIN"
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        if self.ssl_certfile:
            conf["ssl.certificate.location"] = self.ssl_certfile
        if self.ssl_keyfile:
            conf["ssl.key.location"] = self.ssl_keyfile
        return conf

    def faust_credentials(self) -> Any:
        """The same settings as a Faust ``broker_credentials`` object (None for plaintext)."""
        import faust

        ctx: ssl.SSLContext | None = None
        if self.protocol in ("SSL", "SASL_SSL"):
            ctx = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        if self.protocol.startswith("SASL"):
            password = self.sasl_password.get_secret_value() if self.sasl_password else ""
            return faust.SASLCredentials(
                username=self.sasl_username or "",
                password=password,
                mechanism=self.sasl_mechanism or "PLAIN",
                ssl_context=ctx,
            )
        if ctx is not None:
            return faust.SSLCredentials(ctx)
        return None


class Settings(BaseModel):
    """Everything a rollguard process needs to reach Kafka and sign commands."""

    model_config = ConfigDict(frozen=True)
    bootstrap: str = "127.0.0.1:9092"
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    topics: Topics = Field(default_factory=Topics)
    partitions: int = Field(default=4, ge=1, description="partitions of pairs/outcomes (co-partitioned)")
    app_id: str = "rollguard"
    data_dir: str = "rollguard-data"
    flush_interval_s: float = Field(default=0.25, gt=0)
    max_event_bytes: int = Field(default=1_048_576, gt=0)
    max_segments_per_feature: int = Field(default=10_000, gt=0)
    max_scan_chars: int = Field(default=65_536, gt=0)
    spec_dir: str | None = None
    metrics_port: int | None = Field(default=None, description="serve Prometheus /metrics here")

    def librdkafka(self, **extra: Any) -> dict[str, Any]:
        conf = {"bootstrap.servers": self.bootstrap, **self.security.librdkafka()}
        conf.update(extra)
        return conf

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read ``ROLLGUARD_*`` variables; explicit overrides win (CLI flags)."""
        env = os.environ
        sec: dict[str, Any] = {}
        for field, var in (
            ("protocol", "ROLLGUARD_KAFKA_SECURITY_PROTOCOL"),
            ("sasl_mechanism", "ROLLGUARD_KAFKA_SASL_MECHANISM"),
            ("sasl_username", "ROLLGUARD_KAFKA_SASL_USERNAME"),
            ("sasl_password", "ROLLGUARD_KAFKA_SASL_PASSWORD"),
            ("ssl_cafile", "ROLLGUARD_KAFKA_SSL_CAFILE"),
            ("ssl_certfile", "ROLLGUARD_KAFKA_SSL_CERTFILE"),
            ("ssl_keyfile", "ROLLGUARD_KAFKA_SSL_KEYFILE"),
        ):
            if env.get(var):
                sec[field] = env[var]
        values: dict[str, Any] = {"security": KafkaSecurity(**sec)}
        if env.get("ROLLGUARD_BOOTSTRAP"):
            values["bootstrap"] = env["ROLLGUARD_BOOTSTRAP"]
        if env.get("ROLLGUARD_TOPIC_PREFIX"):
            values["topics"] = Topics(prefix=env["ROLLGUARD_TOPIC_PREFIX"])
        for field, var in (
            ("partitions", "ROLLGUARD_PARTITIONS"),
            ("app_id", "ROLLGUARD_APP_ID"),
            ("data_dir", "ROLLGUARD_DATA_DIR"),
            ("flush_interval_s", "ROLLGUARD_FLUSH_INTERVAL_S"),
            ("max_event_bytes", "ROLLGUARD_MAX_EVENT_BYTES"),
            ("max_segments_per_feature", "ROLLGUARD_MAX_SEGMENTS_PER_FEATURE"),
            ("max_scan_chars", "ROLLGUARD_MAX_SCAN_CHARS"),
            ("spec_dir", "ROLLGUARD_SPEC_DIR"),
            ("metrics_port", "ROLLGUARD_METRICS_PORT"),
        ):
            if env.get(var):
                values[field] = env[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
