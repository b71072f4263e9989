"""Replication stack: replica databases and cross-site backups (dualdc.stacks.programs)."""

from pathlib import Path

from dualdc.stacks.programs import replication_program

replication_program(Path(__file__).resolve().parents[2] / "inventories")
