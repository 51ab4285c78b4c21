"""The model-serving tier: Ray Serve LLM applications around vLLM, on the city's GPU cluster.

The gateway never imports this package; it calls the serving tier over its OpenAI-compatible
HTTP API. Engine-specific code lives here only.
"""
