"""The gateway's one way to the serving tier: its OpenAI-compatible HTTP API."""
