"""The index as a data structure, which building, searching and editing all stand on.

- `format.py`: every file name (documents.jsonl included), dtype and shape; atomic writes, checked reads.
- `versions.py`: versions of an index folder and their atomic commits; `validate.py`: the rules of a valid index.
- `codec.py`: ResidualCodec and `fit_codec`, the one recipe that fits it (the build's and reindex's).
- `assign.py`: nearest centroids, with one CPU screen chosen once; `ivf.py`: the inverted lists.
- `loaded.py`: LoadedIndex, THE index in memory (search reads it, `to(device)` places it, edits make new ones), and
  the IndexHandle through which a Searcher and its IndexUpdaters share one published state; `edits.py`:
  IndexState, a LoadedIndex being edited plus its chunk segments, and refit_codec.

It imports only kernels, infra, utils and errors (tests/test_layering.py).
"""
