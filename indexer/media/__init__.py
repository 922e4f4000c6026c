"""indexer/media."""
