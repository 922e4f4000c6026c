"""search/explain."""
