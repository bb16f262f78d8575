"""rollguard: safe AI feature rollouts on Kafka."""
__version__ = "0.1.0"
