"""Demo data for development and the demo."""
