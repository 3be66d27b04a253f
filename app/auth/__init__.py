"""Team access: API keys with roles, browser sessions, guards, CSRF and headers."""
