"""Ansible strategy plugins the wrapper enables (loaded by Ansible from this directory)."""
