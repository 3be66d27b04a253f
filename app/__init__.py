"""AgentOp-Studio web app and domain: store, recorder, live broker, pages, API, CLI."""
