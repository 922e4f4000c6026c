"""search/ann."""
