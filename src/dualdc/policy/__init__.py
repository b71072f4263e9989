"""The policy pack: regulation (DESIGN §4) and structural checks over a loaded topology.

``run_policy(topology)`` runs every rule and returns a :class:`Report` of
:class:`Finding` objects, with waivers applied. Rules are in :mod:`dualdc.policy.rules`;
``iter_rules()`` lists them with their id, title, severity, source and parameters.
"""

from dualdc.policy import rules  # registers every rule
from dualdc.policy.engine import (
    RULES,
    Finding,
    Param,
    Report,
    Rule,
    RuleResult,
    iter_rules,
    resolve_params,
    run_policy,
)

__all__ = [
    "RULES",
    "Finding",
    "Param",
    "Report",
    "Rule",
    "RuleResult",
    "iter_rules",
    "resolve_params",
    "rules",
    "run_policy",
]
