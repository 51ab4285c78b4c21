"""Metered inference for licensees: an OpenAI chat request checked against the licence, its
largest cost reserved in the quota ledger, forwarded, then settled or released."""
