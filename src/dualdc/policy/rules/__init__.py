"""The rules of the policy pack; importing this package registers them all."""

from dualdc.policy.rules import exposure, network, operations, resilience, structure

__all__ = ["exposure", "network", "operations", "resilience", "structure"]
