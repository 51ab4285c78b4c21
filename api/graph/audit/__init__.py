"""The auditors' graph: access records, chain verification, policies and explanations."""
