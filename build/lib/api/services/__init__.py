"""Use cases: domain rules applied through repositories, inside the request's unit of work."""
