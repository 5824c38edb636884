"""The index as a data structure, which building, searching and editing all stand on.

- `format.py`: every file name (documents.jsonl included), dtype and shape; atomic writes, checked reads.
- `versions.py`: versions of an index folder and their atomic commits; `validate.py`: the rules of a valid index.
- `codec.py`: ResidualCodec and `fit_codec`, the one recipe that fits it (the build's and reindex's).
- `assign.py`: nearest centroids, with one CPU screen chosen once; `ivf.py`: the inverted lists.
- `loaded.py`: LoadedIndex, and the IndexHandle through which a Searcher and its IndexUpdaters share one published
  state; `edits.py`: IndexState, the index being edited in memory.

It imports only kernels, infra, utils and errors (tests/test_layering.py).
"""
