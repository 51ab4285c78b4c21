"""Lighthouse's serving tier: Ray Serve LLM applications around vLLM, described by YAML configs.

The gateway never imports this package (nor Ray, nor vLLM); it calls the tier's OpenAI-compatible
HTTP API. Engine-specific imports live in ``app`` (and Ray's in ``supervisor``) only, so the
config models, the tiny model writer and the CLI's checks work without the engine.
"""

__version__ = "0.1.0"
