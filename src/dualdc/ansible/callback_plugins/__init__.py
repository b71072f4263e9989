"""Ansible callback plugins the wrapper enables (loaded by Ansible from this directory)."""
