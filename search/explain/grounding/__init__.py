"""search/explain/grounding."""
