"""What every page and JSON handler shares: the Jinja environment, dependencies,
request parameters, view models and server-sent event streams."""
