"""Runs: start an agent, record its events, watch it live, list and filter runs.

``runner`` starts runs, ``recorder`` persists and publishes their events,
``watch`` and ``watchdog`` react to them, ``remote`` and ``terminal`` serve
the CLI; ``pages`` and ``api`` are the HTML pages and their JSON twins.
"""
