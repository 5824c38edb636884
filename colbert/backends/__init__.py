"""Storage backends for an index living in another engine (optional extras): `colbert.backends.qdrant`."""
