"""Memory snapshots: the agent's message list at each step of a run, and what changed."""
