"""The rules of the policy pack; importing this package registers them all."""

from dualdc.policy.rules import ai, database, exposure, network, operations, resilience, structure

__all__ = ["ai", "database", "exposure", "network", "operations", "resilience", "structure"]
