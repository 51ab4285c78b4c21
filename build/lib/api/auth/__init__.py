"""Who is calling: principals, tokens and issuers."""
