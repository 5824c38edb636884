"""Agreement of our Searcher with the reference's own results on the index it built (../shared/compat).

    python benchmarks/search_compat.py          # -> benchmarks/results/search_compat.json

For k = 10 and 100 (a fresh search per query with default settings, as the fixtures were made): how many of the
300 SciFact queries get the reference's top-10 list (same ids, same order) and its top-k set, the largest score
difference in the top 10, and overlap@10 with exhaustive fp32 MaxSim (exact-top100.tsv) for ours and the reference.
tests/test_search_compat.py asserts the same with tolerances; this script reports the exact figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
COMPAT = SHARED / "compat"


def read(path: Path) -> dict[int, list[tuple[int, float]]]:
    out: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        qid, pid, _, _, score = line.split("\t")
        out[int(qid)].append((int(pid), float(score)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(HERE / "_work" / "minilm-colbert"))
    parser.add_argument("--out", default=str(HERE / "results" / "search_compat.json"))
    args = parser.parse_args()
    if not Path(args.checkpoint, "artifact.metadata").exists():
        subprocess.run([sys.executable, str(COMPAT / "build_checkpoint.py"), args.checkpoint], check=True)

    from colbert import Searcher

    pairs = [line.split("\t")[:2] for line in (SHARED / "data/scifact/queries.tsv").read_text().splitlines()]
    searcher = Searcher(str(COMPAT / "index-scifact1k-nbits2"), checkpoint=args.checkpoint, verbose=0)
    exact = read(COMPAT / "exact-top100.tsv")
    result: dict = {"benchmark": "search_compat", "queries": len(pairs)}
    for k in (10, 100):
        expected = read(COMPAT / f"search-k{k}.tsv")
        same_top10 = same_set = 0
        max_diff, ours_overlap, ref_overlap = 0.0, 0.0, 0.0
        for qid_text, text in pairs:
            qid = int(qid_text)
            pids, _, scores = searcher.search(text, k=k)
            pids, theirs = [int(p) for p in pids], expected[qid]
            same_top10 += pids[:10] == [p for p, _ in theirs[:10]]
            same_set += set(pids) == {p for p, _ in theirs}
            by_pid = dict(theirs)
            max_diff = max([max_diff] + [abs(by_pid[p] - s) for p, s in zip(pids[:10], scores[:10]) if p in by_pid])
            truth = {p for p, _ in exact[qid][:10]}
            ours_overlap += len(set(pids[:10]) & truth) / 10
            ref_overlap += len({p for p, _ in theirs[:10]} & truth) / 10
        result[f"k{k}"] = {"same_top10_list": same_top10, f"same_top{k}_set": same_set,
                           "max_abs_score_diff_top10": max_diff,
                           "overlap@10_vs_exact_fp32": {"ours": ours_overlap / len(pairs),
                                                        "reference": ref_overlap / len(pairs)}}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
