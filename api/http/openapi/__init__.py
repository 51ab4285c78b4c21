"""OpenAPI 3.1 descriptions of the gateway's REST APIs: hand-written YAML beside this package's
code, declared by the domains that serve the routes (``DomainBundle.apis``), served as JSON."""
