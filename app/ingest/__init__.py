"""Ingest of traces from agents that run elsewhere (OTLP/HTTP), recorded like native runs."""
