"""The rules of the policy pack; importing this package registers them all."""

from dualdc.policy.rules import network, operations, resilience, structure

__all__ = ["network", "operations", "resilience", "structure"]
