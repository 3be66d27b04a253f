"""The agent: a tool-calling loop, model providers and tools. No web code here."""
