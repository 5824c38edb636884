"""Jina-ColBERT-v2's layout, loaded without its code: a tiny random checkpoint with the published parameter names,
config.json keys and auto_map, built here; our encoder against a float64 computation written out in this file
(explicit rotation matrices, masked softmax), then Checkpoint -> Indexer -> Searcher, Matryoshka dims and the
settings we refuse."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_backbones import WORDS, check_index_and_search, corpus, unigram_vocab

from colbert import ColBERTConfig, Indexer, Run, RunConfig, Searcher
from colbert.errors import CheckpointError
from colbert.modeling.checkpoint import Checkpoint

HIDDEN, HEADS, LAYERS, INTER, ROWS = 32, 2, 2, 64, 128  # ROWS: Jina-ColBERT-v2's head width (Matryoshka 128/96/64)
REPO = "jinaai/xlm-roberta-flash-implementation"
AUTO_MAP = {"AutoConfig": f"{REPO}--configuration_xlm_roberta.XLMRobertaFlashConfig",
            "AutoModel": f"{REPO}--modeling_xlm_roberta.XLMRobertaModel",
            "AutoModelForMaskedLM": f"{REPO}--modeling_xlm_roberta.XLMRobertaForMaskedLM"}


def jina_checkpoint(path: Path, seed: int = 0, dtype: torch.dtype = torch.float32, **config_changes) -> Path:
    """Jina-ColBERT-v2's files, tiny: config.json (XLMRobertaFlashConfig's keys, auto_map to Jina's code),
    model.safetensors (`roberta.` + the flash implementation's names, `linear.weight` [128, hidden]), an XLM-R
    tokenizer with [QueryMarker]/[DocumentMarker] added, artifact.metadata; and a trap: a modeling file that
    raises if anything imports it."""
    import transformers as tf
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    tok = tf.XLMRobertaTokenizer(vocab=unigram_vocab(["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"]))
    tok.add_tokens(["[QueryMarker]", "[DocumentMarker]"], special_tokens=True)
    tok.save_pretrained(str(path))
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    state = {"roberta.embeddings.word_embeddings.weight": rand(len(tok), HIDDEN, scale=1.0),
             "roberta.embeddings.token_type_embeddings.weight": rand(1, HIDDEN, scale=0.5),
             "roberta.emb_ln.weight": 1 + rand(HIDDEN, scale=0.1), "roberta.emb_ln.bias": rand(HIDDEN, scale=0.1),
             "roberta.pooler.dense.weight": rand(HIDDEN, HIDDEN, scale=0.1),  # in the file, not used by ColBERT
             "roberta.pooler.dense.bias": rand(HIDDEN, scale=0.1),
             "linear.weight": rand(ROWS, HIDDEN, scale=HIDDEN ** -0.5)}
    for i in range(LAYERS):
        layer = f"roberta.encoder.layers.{i}."
        state |= {layer + "mixer.Wqkv.weight": rand(3 * HIDDEN, HIDDEN, scale=0.3),
                  layer + "mixer.Wqkv.bias": rand(3 * HIDDEN, scale=0.1),
                  layer + "mixer.out_proj.weight": rand(HIDDEN, HIDDEN, scale=0.2),
                  layer + "mixer.out_proj.bias": rand(HIDDEN, scale=0.1),
                  layer + "norm1.weight": 1 + rand(HIDDEN, scale=0.1), layer + "norm1.bias": rand(HIDDEN, scale=0.1),
                  layer + "mlp.fc1.weight": rand(INTER, HIDDEN, scale=0.2), layer + "mlp.fc1.bias": rand(INTER, scale=0.1),
                  layer + "mlp.fc2.weight": rand(HIDDEN, INTER, scale=0.2), layer + "mlp.fc2.bias": rand(HIDDEN, scale=0.1),
                  layer + "norm2.weight": 1 + rand(HIDDEN, scale=0.1), layer + "norm2.bias": rand(HIDDEN, scale=0.1)}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    config = {"architectures": ["HF_ColBERT"], "auto_map": AUTO_MAP, "model_type": "xlm-roberta",
              "vocab_size": len(tok), "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
              "num_attention_heads": HEADS, "intermediate_size": INTER, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 8194,
              "type_vocab_size": 1, "initializer_range": 0.02, "layer_norm_eps": 1e-05, "pad_token_id": 1,
              "bos_token_id": 0, "eos_token_id": 2, "position_embedding_type": "rotary", "rotary_emb_base": 20000.0,
              "use_cache": True, "use_reentrant": False, "classifier_dropout": None, "lora_adaptations": None,
              "task_instructions": None, "lora_rank": 4, "lora_dropout_p": 0.0, "lora_alpha": 1,
              "lora_main_params_trainable": False, "load_trained_adapters": False, "use_flash_attn": True,
              "torch_dtype": "bfloat16", "emb_pooler": None, "matryoshka_dimensions": None, "truncate_dim": None,
              **config_changes}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    ColBERTConfig(dim=ROWS, query_maxlen=16, doc_maxlen=48, query_token_id="[QueryMarker]",
                  doc_token_id="[DocumentMarker]", query_token="[QueryMarker]", doc_token="[DocumentMarker]",
                  attend_to_mask_tokens=True).save_for_checkpoint(path)
    (path / "modeling_xlm_roberta.py").write_text("raise RuntimeError('code shipped with the checkpoint ran')\n")
    return path


def layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def rotation(position: int, head_dim: int, rotary_dim: int, base: float, interleaved: bool) -> torch.Tensor:
    """The (head_dim, head_dim) rotation of one position: pair j turns by position * base**(-2j / rotary_dim);
    pairs are dims (j, j + rotary_dim/2), or (2j, 2j + 1) interleaved; dims past rotary_dim stay."""
    R = torch.eye(head_dim, dtype=torch.float64)
    for j in range(rotary_dim // 2):
        a, b = (2 * j, 2 * j + 1) if interleaved else (j, j + rotary_dim // 2)
        theta = position * base ** (-2 * j / rotary_dim)
        R[a, a], R[a, b], R[b, a], R[b, b] = math.cos(theta), -math.sin(theta), math.sin(theta), math.cos(theta)
    return R


def reference_hidden(path: Path, ids: list[int], attended: list[bool] | None = None) -> torch.Tensor:
    """Jina XLM-RoBERTa's forward for one unpadded text, in float64, from the weight file and config.json."""
    from safetensors.torch import load_file

    W = {k: v.double() for k, v in load_file(str(path / "model.safetensors")).items()}
    cfg = json.loads((path / "config.json").read_text())
    d = HIDDEN // HEADS
    rotary_dim = cfg.get("rotary_emb_dim", d)
    R = torch.stack([rotation(p, d, rotary_dim, cfg["rotary_emb_base"], cfg.get("rotary_emb_interleaved", False))
                     for p in range(len(ids))])  # (L, d, d)
    allowed = torch.tensor(attended if attended is not None else [True] * len(ids))
    x = W["roberta.embeddings.word_embeddings.weight"][ids] + W["roberta.embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, W["roberta.emb_ln.weight"], W["roberta.emb_ln.bias"])
    for i in range(LAYERS):
        p = f"roberta.encoder.layers.{i}."
        qkv = x @ W[p + "mixer.Wqkv.weight"].T + W[p + "mixer.Wqkv.bias"]  # (L, 3 * hidden)
        q, k, v = (t.reshape(len(ids), HEADS, d) for t in qkv.split(HIDDEN, dim=-1))
        q, k = torch.einsum("lij,lhj->lhi", R, q), torch.einsum("lij,lhj->lhi", R, k)
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(d)  # (h, L, L)
        scores = scores.masked_fill(~allowed, float("-inf"))
        context = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(len(ids), HIDDEN)
        x = layer_norm(x + context @ W[p + "mixer.out_proj.weight"].T + W[p + "mixer.out_proj.bias"],
                       W[p + "norm1.weight"], W[p + "norm1.bias"])
        hidden = F.gelu(x @ W[p + "mlp.fc1.weight"].T + W[p + "mlp.fc1.bias"],
                        approximate="none" if cfg["hidden_act"] == "gelu" else "tanh")
        x = layer_norm(x + hidden @ W[p + "mlp.fc2.weight"].T + W[p + "mlp.fc2.bias"],
                       W[p + "norm2.weight"], W[p + "norm2.bias"])
    return x


def reference_vectors(path: Path, ids: list[int], dim: int = ROWS, attended: list[bool] | None = None):
    from safetensors.torch import load_file

    head = load_file(str(path / "model.safetensors"))["linear.weight"].double()[:dim]
    return F.normalize(reference_hidden(path, ids, attended) @ head.T, dim=-1)


@pytest.fixture
def jina(tmp_path: Path) -> Path:
    return jina_checkpoint(tmp_path / "jina-colbert-v2")


@pytest.mark.parametrize("changes", [{}, {"rotary_emb_interleaved": True}, {"rotary_emb_dim": 8},
                                     {"hidden_act": "gelu_new", "rotary_emb_base": 10000.0}])
def test_encoder_matches_the_float64_reference_and_ignores_padding(tmp_path, changes):
    path = jina_checkpoint(tmp_path / "ckpt", seed=1, **changes)
    ckpt = Checkpoint(str(path), verbose=0)
    assert type(ckpt.bert).__name__ == "JinaXLMRobertaModel" and ckpt.encoding.backbone == "jina-xlm-roberta"
    texts = ["protein cell gene cancer therapy immune virus brain heart", "blood", "drug trial risk patient"]
    ids = ckpt.doc_tokenizer.encode_unpadded(texts)
    input_ids, mask = ckpt.doc_tokenizer.pad(ids)  # right-padded batch
    with torch.no_grad():
        hidden = ckpt.bert(input_ids, attention_mask=mask).last_hidden_state
    for row, text_ids in enumerate(ids):
        expected = reference_hidden(path, text_ids)
        torch.testing.assert_close(hidden[row, :len(text_ids)].double(), expected, atol=2e-5, rtol=1e-4)
    if changes:  # the setting changes the output: each variant is really exercised
        base = jina_checkpoint(tmp_path / "base", seed=1)
        assert not torch.allclose(reference_hidden(base, ids[0]), reference_hidden(path, ids[0]), atol=1e-3)
    # ColBERT vectors: padded batch == each text alone == the reference (skiplist rows dropped)
    batch = ckpt.docFromText(texts, keep_dims=False)
    for text, text_ids, vectors in zip(texts, ids, batch):
        torch.testing.assert_close(vectors, ckpt.docFromText([text], keep_dims=False)[0], atol=1e-5, rtol=1e-5)
        kept = ckpt.kept_positions(text_ids)
        torch.testing.assert_close(vectors.double(), reference_vectors(path, text_ids)[kept], atol=2e-5, rtol=1e-4)


def test_markers_and_query_augmentation_follow_artifact_metadata(jina):
    ckpt = Checkpoint(str(jina), verbose=0)
    tok = ckpt.raw_tokenizer
    q_marker, d_marker = tok.convert_tokens_to_ids("[QueryMarker]"), tok.convert_tokens_to_ids("[DocumentMarker]")
    assert ckpt.colbert_config.dim == ROWS and ckpt.colbert_config.attend_to_mask_tokens
    ids, mask = ckpt.query_tokenizer.tensorize(["cancer therapy"])
    assert ids[0, :2].tolist() == [tok.cls_token_id, q_marker] and ids.shape == (1, 16)
    assert mask.all()  # attend_to_mask_tokens: the <mask> padding is attended
    assert ckpt.doc_tokenizer.encode_unpadded(["gene"])[0][:2] == [tok.cls_token_id, d_marker]
    Q = ckpt.queryFromText(["cancer therapy"])[0]
    torch.testing.assert_close(Q.double(), reference_vectors(jina, ids[0].tolist()), atol=2e-5, rtol=1e-4)


def test_index_and_search_end_to_end_without_running_checkpoint_code(tmp_path, jina):
    check_index_and_search(tmp_path, jina, corpus(4))
    assert (jina / "modeling_xlm_roberta.py").exists()  # the trap stayed untouched: importing it raises


def test_save_keeps_jina_names_and_reloads(tmp_path, jina):
    ckpt = Checkpoint(str(jina), colbert_config=ColBERTConfig(dim=64), verbose=0)
    ckpt.save(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["auto_map"] == AUTO_MAP and saved["position_embedding_type"] == "rotary"
    from safetensors import safe_open

    with safe_open(str(tmp_path / "saved" / "model.safetensors"), framework="pt") as f:
        assert "roberta.encoder.layers.1.mixer.Wqkv.weight" in f.keys() and f.get_tensor("linear.weight").shape[0] == 64
    again = Checkpoint(str(tmp_path / "saved"), verbose=0)
    assert again.colbert_config.dim == 64
    doc = ["immune virus, mouse"]
    torch.testing.assert_close(again.docFromText(doc, keep_dims=False)[0], ckpt.docFromText(doc, keep_dims=False)[0])


@pytest.mark.parametrize("dim", [96, 64])
def test_matryoshka_dims_are_the_head_first_rows(tmp_path, jina, dim):
    ckpt = Checkpoint(str(jina), colbert_config=ColBERTConfig(dim=dim), verbose=0)
    doc = "brain heart, blood cell"
    ids = ckpt.doc_tokenizer.encode_unpadded([doc])[0]
    D = ckpt.docFromText([doc], keep_dims=False)[0]
    assert D.shape[1] == dim
    torch.testing.assert_close(D.double(), reference_vectors(jina, ids, dim)[ckpt.kept_positions(ids)],
                               atol=2e-5, rtol=1e-4)
    docs = corpus(5, n=24)
    with Run().context(RunConfig(root=str(tmp_path), experiment="jina")):
        index = Indexer(str(jina), config=ColBERTConfig(dim=dim, nbits=2), verbose=0).index(f"d{dim}", docs)
    searcher = Searcher(index, verbose=0)
    assert searcher.loaded.dim == dim and searcher.checkpoint.colbert_config.dim == dim
    for pid in (0, 9):
        exact = searcher.search(docs[pid], k=3, exact=True)[0]
        assert exact[0] in [i for i, _ in searcher.checkpoint.rerank(docs[pid], docs, k=3)]


def test_unsupported_matryoshka_dim_is_named(jina):
    with pytest.raises(CheckpointError, match=r"dim=80.*allows dim 128 or 96 or 64"):
        Checkpoint(str(jina), colbert_config=ColBERTConfig(dim=80), verbose=0)


@pytest.mark.parametrize("key, value", [("position_embedding_type", "absolute"), ("position_embedding_type", "alibi"),
                                        ("rotary_emb_scale_base", 512), ("last_layer_subset", True),
                                        ("rotary_emb_dim", 7), ("rotary_emb_dim", 64), ("hidden_act", "relu")])
def test_unsupported_settings_are_named(tmp_path, key, value):
    path = jina_checkpoint(tmp_path / "ckpt", **{key: value})
    with pytest.raises(CheckpointError, match=rf"config.json has {key}={value!r}"):
        Checkpoint(str(path), verbose=0)


def test_lora_task_adapters_are_refused(tmp_path):
    lora_map = {**AUTO_MAP, "AutoModel": f"{REPO}--modeling_lora.XLMRobertaLoRA"}
    path = jina_checkpoint(tmp_path / "embeddings-v3", auto_map=lora_map, lora_adaptations=["retrieval.query"])
    with pytest.raises(CheckpointError, match="modeling_lora.XLMRobertaLoRA: LoRA task adapters"):
        Checkpoint(str(path), verbose=0)
    # adapter weights beside the plain model class are refused too
    from safetensors.torch import load_file, save_file

    path = jina_checkpoint(tmp_path / "parametrized")
    state = load_file(str(path / "model.safetensors"))
    weight = state.pop("roberta.encoder.layers.0.mixer.Wqkv.weight")
    state["roberta.encoder.layers.0.mixer.Wqkv.parametrizations.weight.original"] = weight
    state["roberta.encoder.layers.0.mixer.Wqkv.parametrizations.weight.0.lora_A"] = torch.zeros(5, 4, HIDDEN)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="LoRA parametrizations"):
        Checkpoint(str(path), verbose=0)


def test_missing_weights_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    path = jina_checkpoint(tmp_path / "ckpt")
    state = load_file(str(path / "model.safetensors"))
    del state["roberta.encoder.layers.1.mlp.fc2.bias"]
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing .*roberta.encoder.layers.1.mlp.fc2.bias"):
        Checkpoint(str(path), verbose=0)


def test_bfloat16_weights_load_as_float32(tmp_path):
    path = jina_checkpoint(tmp_path / "ckpt", dtype=torch.bfloat16)
    ckpt = Checkpoint(str(path), verbose=0)
    assert ckpt.bert.emb_ln.weight.dtype == torch.float32
    ids = ckpt.doc_tokenizer.encode_unpadded([" ".join(WORDS[:5])])[0]
    D = ckpt.docFromText([" ".join(WORDS[:5])], keep_dims=False)[0]
    torch.testing.assert_close(D.double(), reference_vectors(path, ids)[ckpt.kept_positions(ids)], atol=2e-5,
                               rtol=1e-4)


@pytest.mark.parametrize("auto_map", [
    {"AutoModel": "acme/custom-bert--modeling_custom.CustomModel"},
    {**AUTO_MAP, "AutoModel": "acme/xlm-roberta-flash-implementation--modeling_xlm_roberta.XLMRobertaModel"},
    {"AutoConfig": AUTO_MAP["AutoConfig"], "AutoModel": f"{REPO}--modeling_xlm_roberta.XLMRobertaForMaskedLM"},
])
def test_other_custom_code_is_still_refused(tmp_path, auto_map):
    path = jina_checkpoint(tmp_path / "ckpt", auto_map=auto_map)
    with pytest.raises(CheckpointError, match=r"trust_remote_code.*does not run code.*delete auto_map"):
        Checkpoint(str(path), verbose=0)


@pytest.mark.parametrize("storage", ["sharded", "torch"])
def test_weights_load_from_shards_and_torch_files(tmp_path, jina, storage):
    from safetensors.torch import load_file, save_file

    doc = ["gene therapy, immune cell"]
    expected = Checkpoint(str(jina), verbose=0).docFromText(doc, keep_dims=False)[0]
    state = load_file(str(jina / "model.safetensors"))
    (jina / "model.safetensors").unlink()
    if storage == "torch":
        torch.save(state, jina / "pytorch_model.bin")
    else:
        names = sorted(state)
        shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
        for shard, keys in shards.items():
            save_file({k: state[k] for k in keys}, str(jina / shard))
        weight_map = {k: shard for shard, keys in shards.items() for k in keys}
        (jina / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    torch.testing.assert_close(Checkpoint(str(jina), verbose=0).docFromText(doc, keep_dims=False)[0], expected)
