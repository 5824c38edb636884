"""IndexUpdater.reindex() of two checkouts side by side, on the same pair of SciFact indexes (drift.py's setup).

    python benchmarks/reindex_recipe.py build --work W --subset 1000          # once: "full" and "grown" in W
    (cd CHECKOUT && python /abs/benchmarks/reindex_recipe.py reindex --work W --subset 1000 --tag T)  # per checkout

`build` indexes the first N passages ("full"), and their first half ("grown") to which IndexUpdater adds the second
half. `reindex` copies each, reindexes the copy with the colbert of the current directory (a checkout of the
version to measure), and prints JSON: nDCG@10 on SciFact's test queries (qrels restricted to the indexed passages)
and overlap@10 with the full build's top 10, for both copies, and the grown index before reindexing. Run the
`reindex` phase of every checkout on the same W, one after another. The model is drift.py's (MiniLM with the
untrained head, nbits=2).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _drift():
    spec = importlib.util.spec_from_file_location("drift", HERE / "drift.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=("build", "reindex"))
    parser.add_argument("--work", required=True, help="folder of the two indexes, shared by the checkouts")
    parser.add_argument("--subset", type=int, default=1000, help="index the first N SciFact passages")
    parser.add_argument("--tag", default="run", help="names this checkout's copies and its result")
    parser.add_argument("--checkpoint", help="a ColBERT checkpoint folder (default: drift.py's MiniLM)")
    args = parser.parse_args()
    # the checkout being measured first; benchmarks/ off sys.path (its modules could shadow installed
    # packages that transformers looks for)
    sys.path[:] = [str(Path.cwd())] + [p for p in sys.path if p and Path(p).resolve() != HERE]
    drift = _drift()
    checkpoint = drift.checkpoint_dir(args.checkpoint)
    passages, queries, qrels = drift.load_data(args.subset)
    ids = list(passages)
    first, second = ids[: len(ids) // 2], ids[len(ids) // 2:]
    work = Path(args.work)
    if args.phase == "build":
        from colbert import IndexUpdater

        _, seconds_full = drift.build(checkpoint, work, "full", passages)
        grown, seconds_half = drift.build(checkpoint, work, "grown", {i: passages[i] for i in first})
        updater = IndexUpdater(None, str(grown), checkpoint=str(checkpoint))
        updater.add({i: passages[i] for i in second})
        updater.persist_to_disk()
        print(json.dumps({"seconds_full_build": seconds_full, "seconds_half_build": seconds_half,
                          "drift": updater.drift}))
        return
    from colbert import IndexUpdater

    indexes = work / "drift" / "indexes"
    ndcg_full, top_full = drift.evaluate(indexes / "full", checkpoint, queries, qrels)
    ndcg_grown, top_grown = drift.evaluate(indexes / "grown", checkpoint, queries, qrels)
    result = {"tag": args.tag, "checkout": str(Path.cwd()), "passages": len(ids), "full_build": ndcg_full,
              "grown_before_reindex": {"ndcg@10": ndcg_grown, "overlap@10_with_full": drift.overlap(top_full,
                                                                                                  top_grown)}}
    for name in ("grown", "full"):
        copy = Path(shutil.copytree(indexes / name, indexes / f"{name}-{args.tag}"))
        start = time.perf_counter()
        IndexUpdater(None, str(copy)).reindex()
        seconds = time.perf_counter() - start
        ndcg, top = drift.evaluate(copy, checkpoint, queries, qrels)
        result[f"{name}_reindexed"] = {"ndcg@10": ndcg, "overlap@10_with_full": drift.overlap(top_full, top),
                                       "seconds_reindex": seconds, **drift.index_facts(copy)}
        shutil.rmtree(copy)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
