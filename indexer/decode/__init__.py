"""indexer/decode."""
