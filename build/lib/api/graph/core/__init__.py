"""The graph core: context, schema composition, loaders, prefetch, errors. It names no domain."""
