"""The dashboard: KPIs and time series of runs, tokens, cost, latency and success."""
