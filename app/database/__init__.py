"""The store's own housekeeping commands: ``agentop migrate`` and ``agentop copy-db``."""
