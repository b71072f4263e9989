"""Invoke tasks, one module per area; ``tasks.py`` at the root assembles the Collection."""
