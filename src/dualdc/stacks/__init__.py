"""The Pulumi stacks' components and what they derive from the topology.

- :mod:`~dualdc.stacks.naming`: names, labels and placement (from model names only).
- :mod:`~dualdc.stacks.baseline`: namespace labels, Pod Security, quota, limits, RBAC.
- :mod:`~dualdc.stacks.segmentation`: NetworkPolicies from :func:`dualdc.flows.connections`.
- :mod:`~dualdc.stacks.dr`: CloudNativePG replica clusters and Velero backups (DR-01, BK-01).
- :mod:`~dualdc.stacks.site`, :mod:`~dualdc.stacks.replication`: the ``ComponentResource`` classes.
- :mod:`~dualdc.stacks.programs`: the two stack programs; ``stacks/*/__main__.py`` call them.
- :mod:`~dualdc.stacks.validation`, :mod:`~dualdc.stacks.crds`: offline schema checks for render.
"""
