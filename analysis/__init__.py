"""BioVLM science core: plain Python pipelines that never import Django."""
