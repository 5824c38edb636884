"""Training: losses, data, the loop on the tiny model, checkpoints, exact resume, two gloo processes, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from colbert import ColBERTConfig, Run, RunConfig, Trainer
from colbert.infra.launcher import launch
from colbert.modeling.colbert import ColBERT
from colbert.modeling.scoring import colbert_score
from colbert.training.batcher import TrainingData
from colbert.training.losses import (all_pairs_scores, colbert_loss, distillation_kl, in_batch_negatives_loss,
                                     nway_cross_entropy)
from colbert.training.state import STATE_FILE, read_state, step_dir
from colbert.training.train import TrainingJob, run_training

NQ = 8  # queries (and positives) in the toy data; 24 passages


# ----------------------------------------------------------------------------------------------- toy data


@pytest.fixture
def toy(tmp_path: Path) -> dict[str, Path]:
    """String ids everywhere; query i is about topic i, its positive d<i> too, negatives are other topics."""
    topics = ["protein folding", "black holes", "tax policy", "jazz piano", "coral reefs", "rust compilers",
              "medieval castles", "vaccine trials"]
    docs = {f"d{i}": f"a passage on {topics[i % NQ]} number {i} " + "filler " * (i % 5) for i in range(3 * NQ)}
    (tmp_path / "collection.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in docs.items()))
    (tmp_path / "queries.tsv").write_text("".join(f"q-{i}\twhat about {topics[i]}?\n" for i in range(NQ)))
    lines = [[f"q-{i}", f"d{i}", f"d{(i + 1 + r) % NQ}", f"d{(i + 3 + r) % NQ + NQ}"] for r in range(8) for i in range(NQ)]
    (tmp_path / "triples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return {"triples": tmp_path / "triples.jsonl", "queries": tmp_path / "queries.tsv",
            "collection": tmp_path / "collection.tsv", "root": tmp_path / "experiments"}


def job_for(toy: dict[str, Path], checkpoint: Path, run: str, resume_from: Path | None = None,
            **settings) -> TrainingJob:
    config = ColBERTConfig(**{"bsize": 4, "nway": 3, "lr": 1e-3, "maxsteps": 4, **settings})
    return TrainingJob(config, str(toy["triples"]), str(toy["queries"]), str(toy["collection"]), str(checkpoint),
                       str(toy["root"] / run), {}, "cpu", None if resume_from is None else str(resume_from))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return ColBERT(str(path)).state_dict()


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    worst = max((x - b[k]).abs().max().item() for k, x in a.items())
    assert worst <= atol, worst


# ----------------------------------------------------------------------------------------------- losses


def test_nway_cross_entropy_is_softmax_loss_of_the_first_column():
    scores = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    expected = -(scores.log_softmax(-1)[:, 0]).mean()
    torch.testing.assert_close(nway_cross_entropy(scores), expected)


def test_distillation_is_kl_from_the_scaled_teacher():
    scores, teacher = torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([[10.0, 4.0, 6.0]])
    p = (teacher * 0.5).softmax(-1)
    expected = (p * (p.log() - scores.log_softmax(-1))).sum()
    torch.testing.assert_close(distillation_kl(scores, teacher, alpha=0.5), expected)
    assert distillation_kl(scores, scores).item() == pytest.approx(0.0, abs=1e-7)


def random_embeddings(B: int, nway: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    Q = F.normalize(torch.randn(B, 5, 4, generator=g), dim=-1)
    D = F.normalize(torch.randn(B * nway, 7, 4, generator=g), dim=-1)
    mask = torch.rand(B * nway, 7, generator=g) > 0.3
    mask[:, 0] = True
    return Q, D * mask.unsqueeze(-1), mask


def test_all_pairs_scores_equal_colbert_score_pair_by_pair():
    Q, D, mask = random_embeddings(3, 2)
    scores = all_pairs_scores(Q, D, mask)
    for i in range(3):
        torch.testing.assert_close(scores[i], colbert_score(Q[i:i + 1], D, mask))


@pytest.mark.parametrize("nway", [1, 2, 3])
def test_in_batch_loss_equals_the_reference_gather(nway):
    Q, D, mask = random_embeddings(4, nway, seed=nway)
    scores = all_pairs_scores(Q, D, mask)  # (4, 4 * nway)
    N = D.size(0)  # the reference keeps, for query i, documents 0..i*nway (its positive) and those after its own
    rows = [torch.cat([scores[i, : nway * i + 1], scores[i, nway * (i + 1):]]) for i in range(4)]
    expected = F.cross_entropy(torch.stack(rows), torch.arange(4) * nway)
    assert all(r.numel() == N - nway + 1 for r in rows)
    torch.testing.assert_close(in_batch_negatives_loss(Q, D, mask, nway), expected)


def test_colbert_loss_adds_in_batch_loss_and_uses_teacher_scores():
    Q, D, mask = random_embeddings(2, 3)
    plain = colbert_loss(Q, D, mask, nway=3)
    with_ib = colbert_loss(Q, D, mask, nway=3, use_ib_negatives=True)
    assert with_ib.loss.item() == pytest.approx(plain.nway_loss + with_ib.ib_loss)
    nway_scores = torch.stack([colbert_score(Q[i:i + 1], D[3 * i:3 * i + 3], mask[3 * i:3 * i + 3]) for i in range(2)])
    assert plain.loss.item() == pytest.approx(nway_cross_entropy(nway_scores).item())
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    distilled = colbert_loss(Q, D, mask, nway=3, teacher=teacher)
    assert distilled.loss.item() == pytest.approx(distillation_kl(nway_scores, teacher).item())


@pytest.mark.parametrize("module", ["colbert.training.losses", "colbert.training.train", "colbert.training.bm25"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------------------------- data


def test_string_ids_match_by_text_and_shards_are_disjoint(toy):
    data = TrainingData(toy["triples"], toy["queries"], toy["collection"], nway=2)
    assert len(data) == 8 * NQ
    queries, passages, scores = data.texts([0])
    assert queries == ["what about protein folding?"] and len(passages) == 2 and scores is None
    assert passages[0].startswith("a passage on protein folding number 0")
    shards = [set(data.shard(r, 3)) for r in range(3)]
    assert not (shards[0] & shards[1]) and set.union(*shards) == set(range(len(data)))
    assert data.steps(nranks=3, rank_bsize=4) == len(data) // 3 // 4
    numeric = TrainingData([[7, "3", 1]], {7: "q"}, ["a", "b", "c", "d"], nway=2)
    assert numeric.texts([0])[1] == ["d", "b"]  # "3" and 3 name the same passage of a 0..N-1 collection


def test_teacher_scores_are_read(toy):
    data = TrainingData([["q-1", ["d1", 9.5], ["d2", 1.0], ["d3", 0.5]]], toy["queries"], toy["collection"], nway=2)
    assert data.has_scores and data.texts([0])[2] == [9.5, 1.0]


@pytest.mark.parametrize("example, message", [
    (["q-404", "d1", "d2"], "qid 'q-404'"),
    (["q-1", "d1", "nope"], "pid 'nope'"),
    (["q-1", "d1"], "nway=2"),
])
def test_bad_triples_raise_naming_the_id(toy, example, message):
    with pytest.raises(ValueError, match=message):
        TrainingData([["q-0", "d0", "d1"], example], toy["queries"], toy["collection"], nway=2)


def test_mixed_scored_and_plain_triples_raise(toy):
    with pytest.raises(ValueError, match="teacher scores"):
        TrainingData([["q-0", "d0", "d1"], ["q-1", ["d1", 1.0], ["d2", 0.0]]], toy["queries"], toy["collection"], 2)


# ----------------------------------------------------------------------------------------------- mining


def test_maxsim_all_equals_colbert_score():
    from colbert.training.mining import maxsim_all

    Q, D, mask = random_embeddings(3, 2, seed=5)  # 3 queries, 6 passages
    packed, owner = D[mask], torch.arange(6).repeat_interleave(mask.sum(1))
    expected = torch.stack([colbert_score(Q[i:i + 1], D, mask) for i in range(3)])  # (3, 6)
    torch.testing.assert_close(maxsim_all(Q, packed, owner, 6), expected)


def test_bm25_ranks_term_matches_first():
    from colbert.training.bm25 import BM25

    bm25 = BM25(["jazz piano chords", "coral reefs and fish", "piano", "reefs reefs reefs coral"])
    assert bm25.search("coral reefs", k=2) == [3, 1]
    assert bm25.search("piano", k=4)[:2] == [2, 0] and bm25.scores("unknown words").sum() == 0


@pytest.mark.parametrize("use_checkpoint", [False, True])
def test_mined_triples_drop_positives_and_train(toy, tiny_checkpoint, tmp_path, use_checkpoint):
    from colbert.training.mining import mine_hard_negatives

    qrels = {f"q-{i}": [f"d{i}", f"d{i + NQ}"] for i in range(NQ - 1)}  # the last query has no positive
    out = mine_hard_negatives(toy["queries"], qrels, toy["collection"], tmp_path / "mined.jsonl", k=6, negatives=2,
                              passes=2, checkpoint=tiny_checkpoint if use_checkpoint else None)
    lines = [json.loads(line) for line in Path(out).read_text().splitlines()]
    assert len(lines) == 2 * 2 * (NQ - 1)
    for qid, pos, *negs in lines:
        assert pos in qrels[qid] and len(negs) == 2 and not set(negs) & set(qrels[qid])
    assert lines[: len(lines) // 2] != lines[len(lines) // 2:]  # each pass is reshuffled
    assert len(TrainingData(out, toy["queries"], toy["collection"], nway=3)) == len(lines)


def test_mining_rejects_qrels_of_another_collection(toy, tmp_path):
    from colbert.training.mining import mine_hard_negatives

    with pytest.raises(ValueError, match="'d999'"):
        mine_hard_negatives(toy["queries"], {"q-0": ["d999"]}, toy["collection"], tmp_path / "x.jsonl")


# ----------------------------------------------------------------------------------------------- the loop


def eval_loss(model: ColBERT, data: TrainingData, nway: int) -> float:
    queries, passages, _ = data.texts(range(NQ))
    model.eval()
    with torch.no_grad():
        Q = model.query(*model.query_tokenizer.tensorize(queries))
        D, mask = model.doc(*model.doc_tokenizer.tensorize(passages), keep_dims="return_mask")
        return colbert_loss(Q, D, mask, nway).loss.item()


def test_a_few_steps_lower_the_loss_and_save_a_loadable_checkpoint(toy, tiny_checkpoint):
    from colbert import Checkpoint

    job = job_for(toy, tiny_checkpoint, "fit", bsize=8, maxsteps=8, lr=3e-3, accumsteps=2, use_ib_negatives=True)
    data = TrainingData(toy["triples"], toy["queries"], toy["collection"], nway=3)
    before = eval_loss(ColBERT(str(tiny_checkpoint)), data, 3)
    outcome = run_training(0, 1, job)
    assert eval_loss(outcome.model, data, 3) < before - 0.1
    ckpt = Checkpoint(outcome.checkpoint_path)
    stored = json.loads((Path(outcome.checkpoint_path) / "artifact.metadata").read_text())
    assert (stored["nway"], stored["bsize"], stored["dim"]) == (3, 8, 16)
    torch.testing.assert_close(ckpt.queryFromText(["what about black holes?"]),
                               outcome.model.query(*outcome.model.query_tokenizer.tensorize(["what about black holes?"])))
    log = [json.loads(line) for line in (toy["root"] / "fit" / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if r["event"] == "step"]
    assert steps[0]["step"] == 1 and steps[-1]["step"] == 8 and all(r["examples_per_s"] > 0 for r in steps)


def test_warmup_bert_trains_only_the_head_at_first(toy, tiny_checkpoint):
    before = weights(tiny_checkpoint)
    after = run_training(0, 1, job_for(toy, tiny_checkpoint, "warm", maxsteps=2, warmup_bert=2)).model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("bert."))
    assert not torch.equal(before["linear.weight"], after["linear.weight"])


def test_ignore_scores_trains_as_plain_triples(toy, tiny_checkpoint, tmp_path):
    lines = [json.loads(line) for line in toy["triples"].read_text().splitlines()]
    scored = tmp_path / "scored.jsonl"
    scored.write_text("".join(json.dumps([q, *[[p, 10.0 - i] for i, p in enumerate(ps)]]) + "\n" for q, *ps in lines))
    plain = run_training(0, 1, job_for(toy, tiny_checkpoint, "plain", maxsteps=2)).model.state_dict()
    job = job_for(toy, tiny_checkpoint, "ignored", maxsteps=2, ignore_scores=True)
    job.triples = str(scored)
    assert_same_weights(run_training(0, 1, job).model.state_dict(), plain, atol=0.0)
    job = job_for(toy, tiny_checkpoint, "distilled", maxsteps=2)
    job.triples = str(scored)
    assert not torch.equal(run_training(0, 1, job).model.state_dict()["linear.weight"], plain["linear.weight"])


def test_resume_equals_an_uninterrupted_run(toy, tiny_checkpoint):
    settings = dict(maxsteps=5, save_every=2, warmup=2, accumsteps=2, use_ib_negatives=True)
    straight = run_training(0, 1, job_for(toy, tiny_checkpoint, "straight", **settings))
    expected = {k: v.detach().clone() for k, v in straight.model.state_dict().items()}
    run_dir = toy["root"] / "straight"
    shutil.rmtree(step_dir(run_dir))  # as if the run had died after the step-4 checkpoint...
    resumed = run_training(0, 1, job_for(toy, tiny_checkpoint, "straight", resume_from=step_dir(run_dir, 4),
                                         **settings))
    assert resumed.steps == 5
    assert_same_weights(resumed.model.state_dict(), expected)
    assert_same_weights(weights(step_dir(run_dir)), expected)


def test_latest_state_is_the_highest_complete_step(tmp_path):
    from colbert.training.state import latest_state
    from colbert.utils.io import atomic_torch_save

    assert latest_state(tmp_path) is None
    for step, folder in [(4, step_dir(tmp_path, 4)), (12, step_dir(tmp_path, 12)), (8, step_dir(tmp_path))]:
        folder.mkdir(parents=True)
        atomic_torch_save({"version": 1, "step": step}, folder / STATE_FILE)
    step_dir(tmp_path, 16).mkdir()  # a model folder whose state was never written: incomplete, ignored
    assert latest_state(tmp_path) == step_dir(tmp_path, 12)


def test_resume_through_the_trainer_extends_maxsteps_exactly(toy, tiny_checkpoint):
    def train(maxsteps: int, name: str, resume: bool) -> str:
        with Run().context(RunConfig(root=str(toy["root"]), experiment="e", name=name)):
            config = ColBERTConfig(bsize=4, nway=2, lr=1e-3, maxsteps=maxsteps)  # no warmup: constant LR
            trainer = Trainer(str(toy["triples"]), str(toy["queries"]), str(toy["collection"]), config=config)
            return trainer.train(checkpoint=str(tiny_checkpoint), resume=resume)

    first = Path(train(2, "run", resume=False))
    assert read_state(first / STATE_FILE)["step"] == 2
    resumed = train(4, "run", resume=True)
    assert_same_weights(weights(Path(resumed)), weights(Path(train(4, "straight", resume=False))))
    with pytest.raises(ValueError, match="lr: 0.001 then, 0.002 now"):
        with Run().context(RunConfig(root=str(toy["root"]), experiment="e", name="run")):
            config = ColBERTConfig(bsize=4, nway=2, lr=2e-3, maxsteps=6)
            Trainer(str(toy["triples"]), str(toy["queries"]), str(toy["collection"]), config).train(resume=True)


# ----------------------------------------------------------------------------------------------- two processes


def ddp_worker(rank: int, nranks: int, job: TrainingJob, out: str) -> str:
    outcome = run_training(rank, nranks, job)
    used = list(outcome.shard[: outcome.steps * outcome.rank_bsize])
    torch.save({"weights": outcome.model.state_dict(), "used": used}, Path(out) / f"rank{rank}.pt")
    return outcome.checkpoint_path


def test_two_gloo_processes_train_disjoint_shards_into_the_same_weights(toy, tiny_checkpoint, tmp_path):
    job = job_for(toy, tiny_checkpoint, "ddp", bsize=8, maxsteps=3, use_ib_negatives=True)
    job.config.configure(nranks=2)
    path = launch(ddp_worker, job, str(tmp_path), nranks=2, backend="gloo")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert len(ranks[0]["used"]) == len(ranks[1]["used"]) == 3 * 4
    assert not set(ranks[0]["used"]) & set(ranks[1]["used"])
    assert_same_weights(ranks[0]["weights"], ranks[1]["weights"], atol=0.0)
    assert_same_weights(weights(Path(path)), ranks[0]["weights"], atol=0.0)


def fail_on_rank_one(rank: int, nranks: int) -> int:
    if rank == 1:
        raise KeyError("rank one is unhappy")
    return rank


def test_a_worker_error_is_raised_again_with_its_type():
    with pytest.raises(KeyError, match="rank one is unhappy"):
        launch(fail_on_rank_one, nranks=2)


# ----------------------------------------------------------------------------------------------- bad input


def trainer(toy: dict[str, Path], triples=None, **settings) -> Trainer:
    config = ColBERTConfig(**{"bsize": 4, "nway": 2, "maxsteps": 1, **settings})
    with Run().context(RunConfig(root=str(toy["root"]))):  # where files go is the Run's to say, as in colbert-ai
        return Trainer(triples or str(toy["triples"]), str(toy["queries"]), str(toy["collection"]), config=config)


@pytest.mark.parametrize("settings, message", [
    ({"bsize": 5, "nranks": 2}, "divisible by nranks"),
    ({"bsize": 6, "nranks": 2, "accumsteps": 2}, "divisible by accumsteps"),
    ({"nway": 0}, "nway must be an int >= 1"),
])
def test_bad_settings_raise_before_any_process_starts(toy, settings, message):
    with pytest.raises(ValueError, match=message):
        trainer(toy, **settings).train(checkpoint="/nonexistent")


def test_bad_triples_raise_through_the_trainer(toy, tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(["q-1", "d1", "d2"]) + "\n" + json.dumps(["q-2", "d2", "missing"]) + "\n")
    with pytest.raises(ValueError, match="pid 'missing'"):
        trainer(toy, triples=str(bad)).train(checkpoint=str(tiny_checkpoint))
    with pytest.raises(ValueError, match="nway=4"):
        trainer(toy, nway=4).train(checkpoint=str(tiny_checkpoint))


def test_resume_without_a_run_name_is_an_error(toy):
    with pytest.raises(ValueError, match="RunConfig\\(name=...\\)"):
        trainer(toy).train(resume=True)
