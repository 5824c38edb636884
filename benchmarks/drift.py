"""Centroid drift: an index built on half of SciFact and grown to the whole by IndexUpdater, against one built on
the whole at once; then the grown index after IndexUpdater.reindex() (centroids refitted, no model).

    python benchmarks/drift.py --out benchmarks/results/drift.json          # all 5,183 passages
    python benchmarks/drift.py --subset 2000 --out benchmarks/results/drift_2000.json
    python benchmarks/drift.py --work benchmarks/_work/drift   # keep the indexes; reuse a complete full build

The first half of the collection (file order) is indexed and the second half added, as a collection that grows
over time; the centroids of the grown index were fitted on the first half only. Reported per index: nDCG@10 on
SciFact's 300 test queries (ir_measures; with --subset, qrels restricted to the indexed passages), the mean
overlap@10 of its top 10 with the full build's top 10, the number of centroids, and timings. The noise floor:
the full build itself reindexed (centroids refitted on its decompressed embeddings), i.e. how far re-quantizing
alone moves the top 10. The model is
all-MiniLM-L6-v2 with the untrained 384->128 head (../shared/compat/build_checkpoint.py), nbits=2, default
search settings for k=10.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
SCIFACT = SHARED / "data" / "scifact"
WORK = HERE / "_work"
K = 10


def checkpoint_dir(given: str | None) -> Path:
    """The MiniLM ColBERT checkpoint: the given folder, or built once into benchmarks/_work/."""
    if given:
        return Path(given)
    path = WORK / "minilm-colbert"
    if not (path / "config.json").is_file():
        subprocess.run([sys.executable, str(SHARED / "compat" / "build_checkpoint.py"), str(path)], check=True)
    return path


def load_data(subset: int | None) -> tuple[dict, dict, list]:
    """(passages {id: text} in file order, queries {qid: text}, qrels [(qid, doc id, rel)]) as strings/ints."""
    from colbert.data import Collection, Queries

    collection = Collection(path=str(SCIFACT / "collection.tsv"))
    passages = {collection.id_of(pid): text for pid, text in enumerate(collection.data)}
    if subset:
        passages = dict(list(passages.items())[:subset])
    keep = {str(doc_id) for doc_id in passages}
    qrels = [tuple(line.split("\t")) for line in (SCIFACT / "qrels.tsv").read_text().splitlines() if line.strip()]
    qrels = [(qid, pid, int(rel)) for qid, pid, rel in qrels if pid in keep]
    judged = {qid for qid, _, _ in qrels}
    queries = {qid: text for qid, text in Queries(path=str(SCIFACT / "queries.tsv")).items() if str(qid) in judged}
    return passages, queries, qrels


def build(checkpoint: Path, root: Path, name: str, passages: dict, reuse: bool = False) -> tuple[Path, float | None]:
    """Build an index of `passages`; with `reuse`, keep a complete earlier build of as many passages (seconds None)."""
    from colbert import ColBERTConfig, Indexer, Run, RunConfig
    from colbert.errors import IndexFormatError
    from colbert.index import format as index_format

    path = root / "drift" / "indexes" / name
    if reuse and index_format.is_complete(path):
        try:
            index_format.read_doc_ids(path, len(passages))  # raises unless it holds as many passages
            return path, None
        except IndexFormatError:
            pass
    start = time.perf_counter()
    with Run().context(RunConfig(nranks=1, root=str(root), experiment="drift")):
        path = Path(Indexer(str(checkpoint), config=ColBERTConfig(nbits=2), verbose=0).index(name, passages,
                                                                                             overwrite=True))
    return path, time.perf_counter() - start


def evaluate(path: Path, checkpoint: Path, queries: dict, qrels: list) -> tuple[float, dict]:
    """(nDCG@10, {qid: top-10 ids}) with a fresh Searcher (colbert.evaluation)."""
    from colbert import Searcher
    from colbert.evaluation import score_run

    ranking = Searcher(str(path), checkpoint=str(checkpoint), verbose=0).search_all(queries, k=K)
    top = {str(qid): [str(doc_id) for doc_id, _, _ in rows] for qid, rows in ranking.items()}
    judged: dict = {}
    for qid, pid, rel in qrels:
        judged.setdefault(str(qid), {})[str(pid)] = rel
    return score_run(ranking, judged, [f"nDCG@{K}"])[f"nDCG@{K}"], top


def overlap(a: dict, b: dict) -> float:
    """Mean over queries of |top-10(a) & top-10(b)| / 10."""
    return sum(len(set(a[q]) & set(b.get(q, []))) / K for q in a) / max(len(a), 1)


def index_facts(path: Path) -> dict:
    meta = json.loads((path / "metadata.json").read_text())
    return {"num_partitions": meta["num_partitions"], "num_embeddings": meta["num_embeddings"],
            "num_chunks": meta["num_chunks"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a ColBERT checkpoint folder (default: MiniLM, built once)")
    parser.add_argument("--subset", type=int, help="index only the first N passages (default: all)")
    parser.add_argument("--out", default=str(HERE / "results" / "drift.json"))
    parser.add_argument("--work", help="keep the indexes in this folder and reuse its complete full build")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    import torch

    from colbert import IndexUpdater, verify_index

    checkpoint = checkpoint_dir(args.checkpoint)
    passages, queries, qrels = load_data(args.subset)
    ids = list(passages)
    first, second = ids[: len(ids) // 2], ids[len(ids) // 2:]
    WORK.mkdir(exist_ok=True)
    root = Path(args.work) if args.work else Path(tempfile.mkdtemp(dir=WORK, prefix="drift-"))
    results: dict = {"passages": len(ids), "queries": len(queries), "first_half": len(first), "added": len(second),
                     "threads": torch.get_num_threads(), "checkpoint": str(checkpoint), "k": K, "nbits": 2}

    full, results["seconds_full_build"] = build(checkpoint, root, "full", passages, reuse=bool(args.work))
    grown, results["seconds_half_build"] = build(checkpoint, root, "grown", {i: passages[i] for i in first})
    start = time.perf_counter()
    updater = IndexUpdater(None, str(grown), checkpoint=str(checkpoint))
    updater.add({i: passages[i] for i in second})
    updater.persist_to_disk()
    results["seconds_add_and_persist"] = time.perf_counter() - start
    results["drift_before_reindex"] = updater.drift
    assert verify_index(grown) == [] and verify_index(full) == []

    ndcg_full, top_full = evaluate(full, checkpoint, queries, qrels)
    ndcg_grown, top_grown = evaluate(grown, checkpoint, queries, qrels)
    results["full_build"] = {"ndcg@10": ndcg_full, **index_facts(full)}
    results["half_build_plus_add"] = {"ndcg@10": ndcg_grown, "overlap@10_with_full": overlap(top_full, top_grown),
                                      **index_facts(grown)}
    start = time.perf_counter()
    updater.reindex()
    results["seconds_reindex"] = time.perf_counter() - start
    ndcg_reindexed, top_reindexed = evaluate(grown, checkpoint, queries, qrels)
    results["after_reindex"] = {"ndcg@10": ndcg_reindexed, "overlap@10_with_full": overlap(top_full, top_reindexed),
                                **index_facts(grown)}
    floor = Path(shutil.copytree(full, full.with_name("full-reindexed"), dirs_exist_ok=False))
    IndexUpdater(None, str(floor)).reindex()
    ndcg_floor, top_floor = evaluate(floor, checkpoint, queries, qrels)
    results["full_build_reindexed"] = {"ndcg@10": ndcg_floor, "overlap@10_with_full": overlap(top_full, top_floor),
                                       **index_facts(floor)}
    shutil.rmtree(floor)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if not args.work:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
