"""The index as a data structure, which building, searching and editing all stand on.

`loaded.py`: the IndexHandle through which a Searcher and its IndexUpdaters share one published state.
"""
