"""Evaluations: scores and verdicts attached to runs.

``store`` validates and records evaluations (from people, API clients,
heuristics or an LLM judge) and reads them back; ``heuristics`` holds the
built-in evaluators; ``judge`` asks a model to grade an answer; ``apply``
runs chosen evaluators on a finished run; ``pages`` and ``api`` are the
/evals dashboard, scoring forms and their JSON twins.
"""
