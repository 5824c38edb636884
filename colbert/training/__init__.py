"""Training behind `colbert.Trainer`: train.py (the loop, exact resume), batcher.py (triples -> micro-batches),
losses.py, state.py (checkpoints and training state), distributed.py, mining.py and bm25.py (hard negatives).

Nothing here reads `Run()`: the Trainer facade resolves the config and hands it down.
"""
