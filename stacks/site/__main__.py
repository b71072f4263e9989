"""Site stack: every cluster of the stack's site (see dualdc.stacks.programs.site_program)."""

from pathlib import Path

from dualdc.stacks.programs import site_program

site_program(Path(__file__).resolve().parents[2] / "inventories")
