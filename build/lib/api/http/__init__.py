"""Plain HTTP endpoints and ASGI middleware."""
