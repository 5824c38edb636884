"""ModernBERT, XLM-RoBERTa and DeBERTa-v2 backbones, and the PyLate, sentence-transformers 6 and BGE-M3 layouts, with
tiny random models and tokenizers built here (no hub): Checkpoint -> Indexer -> Searcher, token ids and vectors
against what each format's own recipe gives."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.errors import CheckpointError
from colbert.index.codec import ResidualCodec
from colbert.modeling.checkpoint import Checkpoint
from colbert.modeling.hf_format import save_checkpoint

WORDS = "protein cell gene cancer therapy immune virus brain heart blood drug trial risk patient mouse".split()
HIDDEN, DIM = 32, 16
BACKBONES = ("xlm-roberta", "deberta-v2", "modernbert")


def unigram_vocab(specials: list[str], tail: list[str]) -> list[tuple[str, float]]:
    pieces = specials + ["▁" + w for w in WORDS] + list(string.ascii_lowercase) + ["▁"] + list(string.punctuation)
    return [(p, -float(i)) for i, p in enumerate(pieces)] + [(t, 0.0) for t in tail]


def bpe_tokenizer():
    """A byte-level BPE tokenizer shaped as ModernBERT's: [CLS] x [SEP], [PAD] and [MASK] of its own."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3, "[MASK]": 4}
    for piece in [chr(c) for c in range(33, 127)] + ["Ġ"] + WORDS + ["Ġ" + w for w in WORDS]:
        vocab.setdefault(piece, len(vocab))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]", ignore_merges=True))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                      special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                   mask_token="[MASK]", unk_token="[UNK]")


def tiny_backbone(kind: str, seed: int = 0):
    """A random 2-layer, hidden-32 encoder of that architecture and a tokenizer shaped as its own."""
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    if kind == "xlm-roberta":
        tok = tf.XLMRobertaTokenizer(vocab=unigram_vocab(["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"]))
        config = tf.XLMRobertaConfig(vocab_size=len(tok), max_position_embeddings=514, pad_token_id=1, **common)
        model = tf.XLMRobertaModel(config, add_pooling_layer=False)
    elif kind == "deberta-v2":
        tok = tf.DebertaV2Tokenizer(vocab=unigram_vocab(["[PAD]", "[CLS]", "[SEP]", "[UNK]"], ["[MASK]"]))
        config = tf.DebertaV2Config(vocab_size=len(tok), max_position_embeddings=128, relative_attention=True,
                                    position_biased_input=False, pos_att_type=["p2c", "c2p"], type_vocab_size=0,
                                    pad_token_id=0, **common)
        model = tf.DebertaV2Model(config)
    else:
        tok = bpe_tokenizer()
        config = tf.ModernBertConfig(vocab_size=len(tok), max_position_embeddings=128, pad_token_id=3,
                                     cls_token_id=1, sep_token_id=2, bos_token_id=1, eos_token_id=2,
                                     global_attn_every_n_layers=2, local_attention=16, **common)
        model = tf.ModernBertModel(config)
    return model.eval(), tok


def reference_checkpoint(path: Path, kind: str) -> Path:
    """The reference's layout, as colbert-ai saves a model it trained on that backbone (default config: its
    [unused0]/[unused1] markers are not in these vocabularies, so they are the unknown token, as there)."""
    model, tok = tiny_backbone(kind)
    save_checkpoint(path, model, torch.randn(DIM, HIDDEN) / HIDDEN**0.5, tok,
                    ColBERTConfig(dim=DIM, doc_maxlen=48, query_maxlen=16))
    return path


def pylate_checkpoint(path: Path, kind: str, **st_config) -> Path:
    """PyLate's layout: the backbone at the root, "[Q] "/"[D] " added to the tokenizer (embeddings resized),
    1_Dense/ with linear.weight, settings in config_sentence_transformers.json."""
    from safetensors.torch import save_file

    model, tok = tiny_backbone(kind)
    tok.add_tokens(["[Q] ", "[D] "])
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    (path / "1_Dense").mkdir()
    save_file({"linear.weight": torch.randn(DIM, HIDDEN) / HIDDEN**0.5}, str(path / "1_Dense" / "model.safetensors"))
    (path / "1_Dense" / "config.json").write_text(json.dumps({
        "in_features": HIDDEN, "out_features": DIM, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity"}))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]))
    (path / "config_sentence_transformers.json").write_text(json.dumps({
        "model_type": "ColBERT", "query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 16,
        "document_length": 48, "attend_to_expansion_tokens": False, "skiplist_words": list(string.punctuation),
        "do_query_expansion": True, **st_config}))
    return path


def corpus(seed: int = 0, n: int = 40) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(k),), generator=g)) + "."
            for k in torch.randint(3, 14, (n,), generator=g)]


def manual_vectors(ckpt: Checkpoint, ids: list[int], first: int = 0) -> torch.Tensor:
    """The forward written out: backbone, head, L2-normalisation, for one unpadded sequence."""
    with torch.no_grad():
        h = ckpt.bert(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        return F.normalize(ckpt.linear(h.last_hidden_state[0, first:]), dim=-1)


def check_index_and_search(tmp_path: Path, checkpoint: Path, docs: list[str]) -> None:
    """Index with PLAID: the stored vectors decompress to the checkpoint's own (cosine), PLAID's top 3 is exact
    search's, and exact search's best is among brute-force MaxSim's top 3 over fresh vectors (a few vectors of these
    random models quantise poorly at dim 16, so the order may differ)."""
    with Run().context(RunConfig(root=str(tmp_path), experiment="backbones")):
        path = Indexer(str(checkpoint), config=ColBERTConfig(nbits=4), verbose=0).index("idx", docs)
    searcher = Searcher(path, verbose=0)
    index = searcher.loaded
    assert index.num_passages == len(docs) and index.dim == searcher.checkpoint.colbert_config.dim
    codes, residuals, _ = index.lookup(torch.arange(len(docs)))
    codec = ResidualCodec(index.centroids, index.bucket_cutoffs, index.bucket_weights, index.avg_residual, index.nbits)
    fresh, doclens = searcher.checkpoint.docFromText(docs, keep_dims="flatten")
    assert index.doclens.tolist() == doclens
    assert (codec.decompress(codes, residuals).float() * fresh).sum(-1).mean() > 0.99
    for pid in (0, 7, 19):
        exact = searcher.search(docs[pid], k=3, exact=True)
        assert searcher.search(docs[pid], k=3)[0] == exact[0]
        assert exact[0][0] in [i for i, _ in searcher.checkpoint.rerank(docs[pid], docs, k=3)]


@pytest.mark.parametrize("kind", BACKBONES)
def test_reference_layout_on_backbone(tmp_path, kind, caplog):
    checkpoint = reference_checkpoint(tmp_path / "ckpt", kind)
    ckpt = Checkpoint(str(checkpoint), verbose=0)
    tok = ckpt.raw_tokenizer
    assert type(ckpt.bert).__name__ == {"xlm-roberta": "XLMRobertaModel", "deberta-v2": "DebertaV2Model",
                                        "modernbert": "ModernBertModel"}[kind]
    # the reference's convert_tokens_to_ids gives the unknown token for [unused0]/[unused1] here
    assert ckpt.query_tokenizer.Q_marker_token_id == ckpt.doc_tokenizer.D_marker_token_id == tok.unk_token_id
    assert "using its unknown token" in caplog.text
    ids, mask = ckpt.query_tokenizer.tensorize(["cancer therapy"])
    body = tok("cancer therapy", add_special_tokens=False)["input_ids"]
    assert ids[0, :len(body) + 3].tolist() == [tok.cls_token_id, tok.unk_token_id, *body, tok.sep_token_id]
    assert set(ids[0, len(body) + 3:].tolist()) == {tok.mask_token_id} and mask[0].sum() == len(body) + 3
    doc = "gene, drug trial!"
    doc_ids = ckpt.doc_tokenizer.encode_unpadded([doc])[0]
    assert doc_ids[:2] == [tok.cls_token_id, tok.unk_token_id] and doc_ids[-1] == tok.sep_token_id
    per_doc = ckpt.docFromText([doc, "brain"], keep_dims=False)
    # the reference's skiplist: the first id of each punctuation character encoded alone
    skiplist = {tok.encode(c, add_special_tokens=False)[0] for c in string.punctuation}
    assert set(ckpt.skiplist_ids.tolist()) == skiplist
    kept = [i for i, t in enumerate(doc_ids) if t not in skiplist]
    torch.testing.assert_close(per_doc[0], manual_vectors(ckpt, doc_ids)[kept], atol=1e-5, rtol=1e-5)
    # a batch with padding gives what each document alone gives (the pad id and attention mask are right)
    alone = ckpt.docFromText(["brain"], keep_dims=False)[0]
    torch.testing.assert_close(per_doc[1], alone, atol=1e-5, rtol=1e-5)
    reloaded = tmp_path / "saved"
    ckpt.save(reloaded)
    torch.testing.assert_close(Checkpoint(str(reloaded), verbose=0).docFromText([doc], keep_dims=False)[0],
                               per_doc[0])
    check_index_and_search(tmp_path, checkpoint, corpus())


@pytest.mark.parametrize("kind", BACKBONES)
def test_pylate_layout_on_backbone(tmp_path, kind):
    checkpoint = pylate_checkpoint(tmp_path / "ckpt", kind)
    ckpt = Checkpoint(str(checkpoint), verbose=0)
    tok = ckpt.raw_tokenizer
    assert ckpt.encoding.layout == "pylate" and ckpt.colbert_config.dim == DIM
    q_marker, d_marker = tok.convert_tokens_to_ids("[Q] "), tok.convert_tokens_to_ids("[D] ")
    assert ckpt.query_tokenizer.Q_marker_token_id == q_marker and ckpt.doc_tokenizer.D_marker_token_id == d_marker
    assert q_marker != tok.unk_token_id and q_marker >= len(tok) - 2
    ids, _ = ckpt.query_tokenizer.tensorize(["cancer therapy"])
    assert ids[0, :2].tolist() == [tok.cls_token_id, q_marker] and ids.shape == (1, 16)
    # PyLate's skiplist: convert_tokens_to_ids of each punctuation character
    expected = {tok.convert_tokens_to_ids(c) for c in string.punctuation} - {tok.unk_token_id}
    assert set(ckpt.skiplist_ids.tolist()) == expected
    check_index_and_search(tmp_path, checkpoint, corpus(1))


@pytest.mark.parametrize("kind, expansion", [("xlm-roberta", True), ("modernbert", True), ("deberta-v2", False)])
def test_pylate_layout_matches_sentence_transformers(tmp_path, kind, expansion):
    """sentence-transformers 6 reads PyLate checkpoints: its vectors and ours agree (with do_query_expansion off,
    our queries keep zero [PAD] rows where it returns the real tokens only)."""
    pytest.importorskip("sentence_transformers", minversion="6", reason="sentence-transformers 6 is the oracle")
    from sentence_transformers import MultiVectorEncoder

    checkpoint = pylate_checkpoint(tmp_path / "ckpt", kind, do_query_expansion=expansion)
    ours = Checkpoint(str(checkpoint), verbose=0)
    assert ours.encoding.augment_queries == expansion
    theirs = MultiVectorEncoder(str(checkpoint), device="cpu")
    docs, queries = ["gene, drug trial!", "brain heart. blood"], ["cancer therapy", "immune virus mouse"]
    for mine, st in zip(ours.docFromText(docs, keep_dims=False), theirs.encode_document(docs)):
        torch.testing.assert_close(mine, torch.as_tensor(st).float(), atol=1e-5, rtol=1e-4)
    for mine, st in zip(ours.queryFromText(queries), theirs.encode_query(queries)):
        mine = mine if expansion else mine[mine.norm(dim=-1) > 0]
        torch.testing.assert_close(mine, torch.as_tensor(st).float(), atol=1e-5, rtol=1e-4)


def st6_checkpoint(path: Path, kind: str, prompts: dict[str, str], expansion: dict | None,
                   activation: str = "torch.nn.modules.activation.Tanh", normalize: bool = True) -> Path:
    """sentence-transformers 6's MultiVectorEncoder layout, written by hand: Transformer (+ query_expansion),
    Dense (tanh by default, as ST's Dense), MultiVectorMask, Normalize; prompts in config_sentence_transformers."""
    from safetensors.torch import save_file

    model, tok = tiny_backbone(kind)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    (path / "sentence_bert_config.json").write_text(json.dumps({
        "transformer_task": "feature-extraction", "module_output_name": "token_embeddings", "document_length": 40,
        "query_expansion": expansion}))
    modules = [("", "sentence_transformers.base.modules.transformer.Transformer"),
               ("1_Dense", "sentence_transformers.base.modules.dense.Dense"),
               ("2_MultiVectorMask", "sentence_transformers.multi_vector_encoder.modules.multi_vector_mask."
                                     "MultiVectorMask")]
    if normalize:
        modules.append(("3_Normalize", "sentence_transformers.base.modules.normalize.Normalize"))
    (path / "modules.json").write_text(json.dumps([{"idx": i, "name": str(i), "path": p, "type": t}
                                                   for i, (p, t) in enumerate(modules)]))
    (path / "1_Dense").mkdir()
    save_file({"linear.weight": torch.randn(DIM, HIDDEN) / HIDDEN**0.5, "linear.bias": torch.randn(DIM) * 0.1},
              str(path / "1_Dense" / "model.safetensors"))
    (path / "1_Dense" / "config.json").write_text(json.dumps({
        "in_features": HIDDEN, "out_features": DIM, "bias": True, "activation_function": activation,
        "module_input_name": "token_embeddings", "module_output_name": "token_embeddings"}))
    (path / "2_MultiVectorMask").mkdir()
    (path / "2_MultiVectorMask" / "config.json").write_text(json.dumps({
        "skiplist_words": list(string.punctuation), "skiplist_tasks": ["document"], "keep_only_token_ids": None}))
    if normalize:
        (path / "3_Normalize").mkdir()
        (path / "3_Normalize" / "config.json").write_text(json.dumps({"module_input_name": "token_embeddings"}))
    (path / "config_sentence_transformers.json").write_text(json.dumps({
        "model_type": "MultiVectorEncoder", "prompts": prompts, "default_prompt_name": None,
        "similarity_fn_name": None}))
    return path


ST6_CASES = [  # backbone, prompts, query expansion: a text prompt, a marker-token prompt, none of either
    ("xlm-roberta", {"query": "query: ", "document": "passage: "}, {"strategy": "fixed", "attend": False,
                                                                    "length": 12}),
    ("modernbert", {"query": "[CLS]", "document": ""}, {"strategy": "fixed", "attend": True, "length": 12}),
    ("deberta-v2", {}, None),
]


@pytest.mark.parametrize("kind, prompts, expansion", ST6_CASES)
def test_sentence_transformers_6_layout(tmp_path, kind, prompts, expansion):
    checkpoint = st6_checkpoint(tmp_path / "ckpt", kind, prompts, expansion)
    ckpt = Checkpoint(str(checkpoint), verbose=0)
    config = ckpt.colbert_config
    assert ckpt.encoding.layout == "sentence-transformers" and config.dim == DIM and config.doc_maxlen == 40
    assert ckpt.linear.bias is not None and isinstance(ckpt.activation, torch.nn.Tanh)
    assert ckpt.encoding.augment_queries == (expansion is not None)
    Q = ckpt.queryFromText(["cancer therapy"])
    assert Q.shape == (1, config.query_maxlen, DIM)
    if expansion is None:  # no augmentation: the padding rows are zero
        n = len(ckpt.raw_tokenizer("cancer therapy")["input_ids"])
        assert Q[0, :n].norm(dim=-1).min() > 0.99 and Q[0, n:].abs().max() == 0
    with pytest.raises(CheckpointError, match="cannot hold"):
        ckpt.save(tmp_path / "saved")
    check_index_and_search(tmp_path, checkpoint, corpus(2))


@pytest.mark.parametrize("kind, prompts, expansion", ST6_CASES)
def test_sentence_transformers_6_layout_matches_it(tmp_path, kind, prompts, expansion):
    """The vectors sentence-transformers 6 itself gives for the checkpoint, query and document sides."""
    pytest.importorskip("sentence_transformers", minversion="6", reason="sentence-transformers 6 is the oracle")
    from sentence_transformers import MultiVectorEncoder

    checkpoint = st6_checkpoint(tmp_path / "ckpt", kind, prompts, expansion)
    ours = Checkpoint(str(checkpoint), verbose=0)
    theirs = MultiVectorEncoder(str(checkpoint), device="cpu")
    docs = ["gene, drug trial!", "brain heart. blood cell protein"]
    for mine, st in zip(ours.docFromText(docs, keep_dims=False), theirs.encode_document(docs)):
        torch.testing.assert_close(mine, torch.as_tensor(st).float(), atol=1e-5, rtol=1e-4)
    queries = ["cancer therapy", "immune virus mouse"]
    for mine, st in zip(ours.queryFromText(queries), theirs.encode_query(queries)):
        st = torch.as_tensor(st).float()
        kept = mine[mine.norm(dim=-1) > 0]  # without augmentation ST returns the real tokens only
        torch.testing.assert_close(kept if expansion is None else mine, st, atol=1e-5, rtol=1e-4)


def test_sentence_transformers_6_truncate_dim_matryoshka(tmp_path):
    """A saved truncate_dim keeps the first dims of each vector, renormalised (what sentence-transformers 6 does)."""
    checkpoint = st6_checkpoint(tmp_path / "ckpt", "xlm-roberta", {}, None)
    full = Checkpoint(str(checkpoint), verbose=0).docFromText(["gene, drug trial!"], keep_dims=False)[0]
    st_config = json.loads((checkpoint / "config_sentence_transformers.json").read_text())
    (checkpoint / "config_sentence_transformers.json").write_text(json.dumps({**st_config, "truncate_dim": 8}))
    ckpt = Checkpoint(str(checkpoint), verbose=0)
    assert ckpt.colbert_config.dim == 8
    truncated = ckpt.docFromText(["gene, drug trial!"], keep_dims=False)[0]
    assert truncated.shape == (full.shape[0], 8)
    # normalise(x[:8]) == normalise(normalise(x)[:8])
    torch.testing.assert_close(truncated, F.normalize(full[:, :8], dim=-1), atol=1e-5, rtol=1e-4)
    (checkpoint / "config_sentence_transformers.json").write_text(json.dumps({**st_config, "truncate_dim": 99}))
    with pytest.raises(CheckpointError, match="truncate_dim 99"):
        Checkpoint(str(checkpoint), verbose=0)


def test_sentence_transformers_6_without_normalize_is_refused(tmp_path):
    checkpoint = st6_checkpoint(tmp_path / "ckpt", "xlm-roberta", {}, None, normalize=False)
    with pytest.raises(CheckpointError, match="no Normalize module"):
        Checkpoint(str(checkpoint), verbose=0)


def test_unsupported_dense_activation_is_named(tmp_path):
    checkpoint = st6_checkpoint(tmp_path / "ckpt", "xlm-roberta", {}, None,
                                activation="torch.nn.modules.activation.ReLU")
    with pytest.raises(CheckpointError, match="activation torch.nn.modules.activation.ReLU is not supported"):
        Checkpoint(str(checkpoint), verbose=0)


def bge_m3_checkpoint(path: Path, seed: int = 0) -> Path:
    """BGE-M3's files: an XLM-RoBERTa encoder at the root and colbert_linear.pt (weight [dim, hidden] + bias)."""
    model, tok = tiny_backbone("xlm-roberta", seed)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    torch.save({"weight": torch.randn(HIDDEN, HIDDEN) / HIDDEN**0.5, "bias": torch.randn(HIDDEN) * 0.1},
               path / "colbert_linear.pt")
    torch.save({"weight": torch.randn(1, HIDDEN), "bias": torch.zeros(1)}, path / "sparse_linear.pt")
    return path


def test_bge_m3_multi_vector_head(tmp_path):
    checkpoint = bge_m3_checkpoint(tmp_path / "ckpt")
    ckpt = Checkpoint(str(checkpoint), verbose=0)
    tok = ckpt.raw_tokenizer
    assert ckpt.encoding.layout == "bge-m3" and ckpt.colbert_config.dim == HIDDEN and ckpt.linear.bias is not None
    assert ckpt.skiplist_ids.numel() == 0
    # FlagEmbedding's recipe: no markers, colbert_linear on every token but <s>, L2-normalised, padding dropped
    doc = "gene, drug trial!"
    ids = tok(doc)["input_ids"]
    assert ckpt.doc_tokenizer.encode_unpadded([doc])[0] == ids
    head = torch.load(checkpoint / "colbert_linear.pt")
    with torch.no_grad():
        h = ckpt.bert(torch.tensor([ids])).last_hidden_state[0, 1:]
        expected = F.normalize(h @ head["weight"].T + head["bias"], dim=-1)
    per_doc = ckpt.docFromText([doc, "brain"], keep_dims=False)
    torch.testing.assert_close(per_doc[0], expected, atol=1e-5, rtol=1e-4)
    assert per_doc[1].shape[0] == len(tok("brain")["input_ids"]) - 1
    Q = ckpt.queryFromText(["cancer therapy"])[0]  # query_maxlen rows: the real ones, then zeros (no [MASK]s)
    q_ids = tok("cancer therapy")["input_ids"]
    with torch.no_grad():
        hq = ckpt.bert(torch.tensor([q_ids])).last_hidden_state[0, 1:]
    torch.testing.assert_close(Q[1:len(q_ids)], F.normalize(hq @ head["weight"].T + head["bias"], dim=-1),
                               atol=1e-5, rtol=1e-4)
    assert Q[0].abs().max() == 0 and Q[len(q_ids):].abs().max() == 0
    with pytest.raises(CheckpointError, match="cannot hold"):
        ckpt.save(tmp_path / "saved")
    check_index_and_search(tmp_path, checkpoint, corpus(3))


def test_custom_model_code_is_refused_with_what_to_do(tmp_path):
    """The reference's files with markers [QueryMarker]/[DocumentMarker] over an encoder that transformers would
    load from custom code (auto_map, trust_remote_code): refused, unless the code is Jina's XLM-RoBERTa, which we
    implement ourselves (tests/test_jina.py)."""
    model, tok = tiny_backbone("xlm-roberta")
    tok.add_tokens(["[QueryMarker]", "[DocumentMarker]"], special_tokens=True)
    model.resize_token_embeddings(len(tok))
    path = tmp_path / "custom"
    save_checkpoint(path, model, torch.randn(DIM, HIDDEN), tok, ColBERTConfig(
        dim=DIM, doc_maxlen=48, query_token_id="[QueryMarker]", doc_token_id="[DocumentMarker]"))
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "acme/fast-xlmr--configuration_fast.FastConfig",
                          "AutoModel": "acme/fast-xlmr--modeling_fast.FastXLMRobertaModel"}
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"trust_remote_code.*does not run code.*delete auto_map"):
        Checkpoint(str(path), verbose=0)
    with pytest.raises(CheckpointError, match="trust_remote_code"):
        Indexer(str(path), verbose=0)
    # its markers work once the encoder is a transformers architecture (auto_map removed)
    del config["auto_map"]
    (path / "config.json").write_text(json.dumps(config))
    ckpt = Checkpoint(str(path), verbose=0)
    assert ckpt.query_tokenizer.Q_marker_token_id == tok.convert_tokens_to_ids("[QueryMarker]")
    assert ckpt.doc_tokenizer.D_marker_token_id == tok.convert_tokens_to_ids("[DocumentMarker]")


@pytest.mark.compat
@pytest.mark.slow
@pytest.mark.parametrize("kind", BACKBONES)
def test_the_reference_encodes_these_backbones_as_we_do(tmp_path, kind):
    """colbert-ai 0.2.22 (its own venv, transformers 4) loads the reference-layout checkpoint of each backbone and
    gives the same token ids (its [unused0]/[unused1] markers being the unknown token) and vectors."""
    from test_reference_roundtrip import PYTHON, run_reference

    if not PYTHON.exists():
        pytest.skip("no reference venv: run bash ../shared/reference/setup.sh")
    checkpoint = reference_checkpoint(tmp_path / "ckpt", kind)
    ours = Checkpoint(str(checkpoint), verbose=0)
    docs, query = ["gene, drug trial!", "brain heart. blood cell protein"], "cancer therapy?"
    code = f"""
import json
from colbert.modeling.checkpoint import Checkpoint
from colbert.infra import ColBERTConfig
ckpt = Checkpoint({str(checkpoint)!r}, colbert_config=ColBERTConfig())
D, doclens = ckpt.docFromText({docs!r}, bsize=8, keep_dims='flatten')
ids, _ = ckpt.query_tokenizer.tensorize([{query!r}])
print(json.dumps({{"D": D.tolist(), "doclens": doclens, "Q": ckpt.queryFromText([{query!r}]).tolist(),
                  "ids": ids.tolist()}}))
"""
    got = run_reference(code, tmp_path)
    D, doclens = ours.docFromText(docs, bsize=8, keep_dims="flatten")
    assert got["ids"] == ours.query_tokenizer.tensorize([query])[0].tolist()
    assert got["doclens"] == doclens
    torch.testing.assert_close(torch.tensor(got["D"]), D, atol=1e-5, rtol=1e-4)
    Q, (_, mask) = ours.queryFromText([query]), ours.query_tokenizer.tensorize([query])
    real = mask.bool()  # [CLS], marker, text, [SEP]: attended
    torch.testing.assert_close(torch.tensor(got["Q"])[real], Q[real], atol=1e-5, rtol=1e-4)
    # the [MASK] positions the encoder does not attend to: transformers 4 and 5 compute ModernBERT's differently
    masked_atol = 5e-3 if kind == "modernbert" else 1e-5
    torch.testing.assert_close(torch.tensor(got["Q"])[~real], Q[~real], atol=masked_atol, rtol=1e-2)
