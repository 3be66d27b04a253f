"""Replay a run with overrides, and the diff of what changed (pages, API, CLI)."""
