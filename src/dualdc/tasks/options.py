"""What the tasks share: their defaults, in one place, and the help of options many tasks have.

``tasks.py`` sets :data:`DEFAULTS` on the collection (``ns.configure``): a task whose ``--env``
is not given takes ``dualdc.env`` from Invoke's configuration (``lab``, or an ``invoke.yaml``'s
``dualdc: {env: ...}``, or ``INVOKE_DUALDC_ENV``). An ``--env ""`` stays an error.
"""

from __future__ import annotations

from typing import Any

from invoke.context import Context

#: Invoke configuration of every task (``ns.configure``).
DEFAULTS: dict[str, Any] = {"dualdc": {"env": "lab"}}

#: Help of options several tasks share, said once.
HELP = {
    "env": "Environment under inventories/ (default: dualdc.env of the Invoke configuration, lab).",
    "output": "Write the report to this file instead of stdout.",
    "backend": "Pulumi state backend URL (default: $DUALDC_PULUMI_BACKEND, else .state/<env>/pulumi).",
}


def helps(*shared: str, **own: str) -> dict[str, str]:
    """A task's ``help``: the shared entries named, then its own (which may say more)."""
    return {**{name: HELP[name] for name in shared}, **own}


def env_of(c: Context, env: str | None) -> str:
    """``--env`` as given, else the configured default (``dualdc.env``)."""
    if env is not None:
        return env
    config = c.config.get("dualdc") if c.config is not None else None
    configured = config.get("env") if config else None
    return str(configured or DEFAULTS["dualdc"]["env"])
