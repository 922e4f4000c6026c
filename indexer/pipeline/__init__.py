"""indexer/pipeline."""
