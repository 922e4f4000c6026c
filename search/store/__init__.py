"""search/store."""
