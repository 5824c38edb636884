"""Where a colbert library puts an index, looks for one, and keeps a run's outputs, for many ways of saying it.

Runs unchanged under this library and under colbert-ai 0.2.22, so tests/test_locations.py can compare the two:

    cd EMPTY_FOLDER && cp .../location_probe.py . && python location_probe.py CHECKPOINT locations.json

Writes one JSON object {case: result} to the file named last (colbert-ai prints to stdout as it goes). Paths are printed relative to the working directory, as "<cwd>/...",
normalised (no trailing slash). Nothing is built or read: Indexer's build and Searcher's index read are replaced
by stubs, so each case only records the folder the library chose (Indexer.index's return value, the folder the
Searcher would open), Run().path_ (where the reference's Ranking.save puts a relative name) and the path_ of a
Trainer's config (the run folder of training; colbert-ai's spawned training worker writes under
root/experiment/none/name instead, as its script-name level is "none" there).
"""

import json
import os
import sys
import warnings

import colbert.searcher
from colbert import Indexer, Searcher, Trainer
from colbert.infra import ColBERTConfig, Run, RunConfig

CWD = os.getcwd()
R1, R2, I1, P1 = (os.path.join(CWD, d) for d in ("r1", "r2", "i1", "p1"))

# case -> (nested RunConfig kwargs, ColBERTConfig kwargs for config= or None, what to do)
CASES = {
    "defaults": ([], None, {"index": "idx", "search": "idx"}),
    "config_root_without_run": ([], {"root": R1, "experiment": "e1"}, {"index": "idx", "search": "idx"}),
    "config_root_inside_run_nranks": ([{"nranks": 1}], {"root": R1, "experiment": "e1"},
                                      {"index": "idx", "search": "idx"}),
    "run_root": ([{"nranks": 1, "root": R1, "experiment": "e1"}], {"nbits": 2}, {"index": "idx", "search": "idx"}),
    "run_root_and_config_root": ([{"root": R1, "experiment": "e1"}], {"root": R2, "experiment": "e2"},
                                 {"index": "idx", "search": "idx"}),
    "relative_run_root": ([{"root": "rel", "experiment": "e1"}], None, {"index": "idx", "search": "idx"}),
    "run_index_root": ([{"nranks": 1, "index_root": I1}], None, {"index": "idx", "search": "idx"}),
    "config_index_root": ([{"nranks": 1}], {"index_root": I1}, {"index": "idx", "search": "idx"}),
    "config_index_path": ([{"root": R1}], {"index_path": P1}, {"index": "idx", "search": "idx"}),
    "run_index_root_and_config_index_path": ([{"index_root": I1}], {"index_path": P1}, {"index": "idx"}),
    "nested_runs": ([{"root": R1, "experiment": "e1"}, {"experiment": "e2"}], None,
                    {"index": "idx", "search": "idx"}),
    "run_name": ([{"root": R1, "experiment": "e1", "name": "n1"}], None, {"train": True}),
    "config_name": ([{"root": R1}], {"name": "n2", "experiment": "e2"}, {"train": True}),
    "config_root_for_training": ([{"nranks": 1}], {"root": R2, "name": "n3"}, {"train": True}),
    "name_with_folder": ([{"root": R1}], None, {"index": "sub/idx", "search": "sub/idx"}),
    "name_is_absolute_path": ([{"root": R1}], None,
                              {"index": os.path.join(CWD, "abs", "idx"), "search": os.path.join(CWD, "abs", "idx")}),
    "empty_name": ([{"root": R1, "experiment": "e1"}], None, {"index": "", "search": ""}),
    "searcher_index_root_argument": ([{"root": R1}], {"index_root": I1},
                                     {"search": "idx", "search_index_root": os.path.join(CWD, "arg")}),
}


class Found(Exception):
    """Raised by the stubs with the folder the library chose."""


def shown(path):
    path = os.path.normpath(str(path))
    return "<cwd>" + path[len(CWD):] if path.startswith(CWD) else path


def stub_out_work():
    if hasattr(Indexer, "_Indexer__launch"):  # colbert-ai
        Indexer._Indexer__launch = lambda self, collection: None

        def load_from_index(index_path):
            raise Found(index_path)

        colbert.searcher.ColBERTConfig.load_from_index = staticmethod(load_from_index)
    else:  # this library: the folder Searcher tries first (it then tries `index` as a path of its own)
        Indexer._build = lambda self, *args, **kwargs: None

        def resolve_index_path(index, index_root):
            raise Found(os.path.join(index_root, index))

        colbert.searcher.resolve_index_path = resolve_index_path


def run_case(checkpoint, runs, config, actions):
    result = {}
    with _contexts(runs):
        result["run_path"] = shown(Run().path_)
        make_config = (lambda: ColBERTConfig(**config)) if config is not None else (lambda: None)
        if "index" in actions:
            try:
                indexer = Indexer(checkpoint, config=make_config(), verbose=0)
                result["index"] = shown(indexer.index(actions["index"], ["a passage"], overwrite="reuse"))
            except Exception as e:  # noqa: BLE001 - the probe records what each library does
                result["index"] = f"{type(e).__name__}"
        if actions.get("train"):
            trainer = Trainer(triples="t.jsonl", queries="q.tsv", collection="c.tsv", config=make_config())
            result["train_config_path"] = shown(trainer.config.path_)
        if "search" in actions:
            try:
                Searcher(actions["search"], checkpoint=checkpoint, config=make_config(),
                         index_root=actions.get("search_index_root"), verbose=0)
                result["search"] = "opened?"
            except Found as found:
                result["search"] = shown(found.args[0])
            except Exception as e:  # noqa: BLE001
                result["search"] = f"{type(e).__name__}"
    return result


class _contexts:
    def __init__(self, runs):
        self.runs, self.managers = runs, []

    def __enter__(self):
        for kwargs in self.runs:
            manager = Run().context(RunConfig(**kwargs))
            manager.__enter__()
            self.managers.append(manager)

    def __exit__(self, *exc):
        for manager in reversed(self.managers):
            manager.__exit__(None, None, None)


def main():
    checkpoint = sys.argv[1]
    stub_out_work()
    warnings.simplefilter("ignore")
    out = {case: run_case(checkpoint, *spec) for case, spec in CASES.items()}
    with open(sys.argv[2], "w") as f:
        f.write(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
