"""The reference's checkpoint layout on disk, and the loading every layout shares (layouts.py reads the others).

Layouts:

* **The reference's** (colbert-ai `BaseColBERT.save`, e.g. colbert-ir/colbertv2.0): `config.json` (the backbone's
  config, `architectures: ["HF_ColBERT"]`), `model.safetensors` or `pytorch_model.bin` holding the backbone's
  tensors under its `base_model_prefix` (`bert.`, `roberta.`, `electra.`, `deberta.`, `model.`) plus
  `linear.weight` [dim, hidden], the tokenizer files, and `artifact.metadata` (the ColBERTConfig as JSON).
* **PyLate, sentence-transformers 6 and BGE-M3**: colbert.modeling.layouts reads them (and refuses custom model
  code other than Jina's XLM-RoBERTa, which colbert.modeling.jina_xlmr implements); `load_checkpoint_config` and
  `load_head` answer for every layout through it.

A plain backbone (`bert-base-uncased`, a sentence-transformers model without a Dense module) loads too, with no
head: callers that need one (training) initialise it. We save in the reference's layout only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from colbert.errors import CheckpointError
from colbert.infra.config import ColBERTConfig

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METADATA_FILE = "artifact.metadata"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
HEAD_KEY = "linear.weight"


def resolve_file(name_or_path: str, filename: str) -> Optional[str]:
    """Local path of `filename` in a checkpoint folder or hub repo, or None when it has no such file."""
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        return path if os.path.isfile(path) else None
    try:
        from transformers.utils import cached_file

        return cached_file(
            name_or_path,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except (OSError, ValueError) as e:  # unknown repo, offline without a cache, bad name
        logger.debug("Could not resolve %s in %s: %s", filename, name_or_path, e)
        return None


def read_json(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} ({what}) is not valid JSON: {e}. Re-download or re-save the checkpoint.") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} ({what}) does not hold a JSON object. Re-download or re-save the checkpoint.")
    return data


def looks_like_a_path(name: str) -> bool:
    """Whether a checkpoint name can only be a local path, not a hub name ('org/model' or 'model'): absolute, starting
    with '.' or '~', with a backslash or several '/', or whose first folder exists here ('experiments/ckpt').

    >>> looks_like_a_path("colbert-ir/colbertv2.0"), looks_like_a_path("/ckpts/colbert"), looks_like_a_path("a/b/c")
    (False, True, True)
    """
    first = name.split("/", 1)[0]
    return (os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name or name.count("/") > 1
            or name.endswith("/") or ("/" in name and os.path.isdir(first)))


def check_checkpoint_name(name_or_path: str) -> str:
    """Raise CheckpointError for a checkpoint that is a missing local folder or a file, or a hub name that cannot be
    loaded here (not in the Hugging Face cache, and the hub does not have it or gives no answer within
    colbert.modeling.hub.HUB_TIMEOUT seconds); return the name.
    """
    path = os.path.expanduser(name_or_path)
    if os.path.isfile(path):
        raise CheckpointError(f"The checkpoint {name_or_path} is a file; give the checkpoint folder (the one holding "
                              f"{CONFIG_FILE} and the weights).")
    if os.path.exists(path):
        return name_or_path
    if looks_like_a_path(name_or_path):
        raise CheckpointError(f"No such checkpoint folder: {name_or_path} ({os.path.abspath(path)} does not exist). "
                              "Check the path, or give a Hugging Face Hub name such as colbert-ir/colbertv2.0.")
    from colbert.modeling.hub import hub_problem

    problem = hub_problem(name_or_path)  # a hub name: in the cache, or the hub has it
    if problem is not None:
        raise CheckpointError(problem)
    return name_or_path


def load_checkpoint_config(name_or_path: str) -> Optional[ColBERTConfig]:
    """The ColBERTConfig stored with a checkpoint (any layout colbert.modeling.layouts reads), or None for a plain
    backbone.

    Fields read from the checkpoint count as assigned, so they override defaults but not explicit arguments.

    Raises:
        CheckpointError: `name_or_path` is a missing local folder or a file, or its config is not valid.
    """
    from colbert.modeling.layouts import read_layout

    return read_layout(name_or_path)[0]


def load_reference_config(name_or_path: str) -> Optional[ColBERTConfig]:
    """The ColBERTConfig of the reference's layout (`artifact.metadata`), or None when there is none."""
    metadata = resolve_file(name_or_path, METADATA_FILE)
    if metadata is None:
        return None
    try:
        config = ColBERTConfig.from_dict(read_json(metadata, "ColBERT config"))
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{metadata} (ColBERT config): {e}. Fix the value or re-save the checkpoint.") from e
    config.configure(checkpoint=name_or_path)
    return config


def _load_tensor(path: str, key: str) -> Optional[torch.Tensor]:
    """One tensor from a .safetensors or torch file, or None when the file lacks it."""
    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                return f.get_tensor(key) if key in f.keys() else None
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors and torch raise many types for a damaged file
        raise CheckpointError(f"Could not read {path}: {e}. The file is corrupt or incomplete; re-download it.") from e
    return state.get(key) if isinstance(state, dict) else None


def load_tensor_from_folder(name_or_path: str, folder: str, key: str) -> Optional[torch.Tensor]:
    """Tensor `key` from the weights of `folder` ("" for the root): a sharded safetensors index, model.safetensors
    or pytorch_model.bin, or None when none holds it."""
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    index = resolve_file(name_or_path, prefix + SAFETENSORS_INDEX_FILE)
    if index is not None:
        shard = read_json(index, "safetensors index").get("weight_map", {}).get(key)
        path = resolve_file(name_or_path, prefix + shard) if shard else None
        if path:
            return _load_tensor(path, key)
    for filename in (SAFETENSORS_FILE, TORCH_FILE):
        path = resolve_file(name_or_path, prefix + filename)
        if path is not None:
            tensor = _load_tensor(path, key)
            if tensor is not None:
                return tensor
    return None


def load_all_tensors(name_or_path: str) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint's root weights: the shards of model.safetensors.index.json, model.safetensors
    or pytorch_model.bin (the first that exists)."""
    index = resolve_file(name_or_path, SAFETENSORS_INDEX_FILE)
    if index is not None:
        shards = sorted(set(read_json(index, "safetensors index").get("weight_map", {}).values()))
        paths = [resolve_file(name_or_path, shard) for shard in shards]
        if None in paths:
            raise CheckpointError(f"{name_or_path}: a shard named in {SAFETENSORS_INDEX_FILE} is missing; "
                                  "re-download the checkpoint.")
    else:
        path = resolve_file(name_or_path, SAFETENSORS_FILE) or resolve_file(name_or_path, TORCH_FILE)
        if path is None:
            raise CheckpointError(f"{name_or_path} has neither {SAFETENSORS_FILE} nor {TORCH_FILE}; re-download "
                                  "the checkpoint.")
        paths = [path]
    tensors: dict[str, torch.Tensor] = {}
    for path in paths:
        try:
            if path.endswith(".safetensors"):
                from safetensors.torch import load_file

                tensors.update(load_file(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
                tensors.update(state if isinstance(state, dict) else {})
        except Exception as e:  # safetensors and torch raise many types for a damaged file
            raise CheckpointError(f"Could not read {path}: {e}. The file is corrupt or incomplete; re-download "
                                  "it.") from e
    return tensors


def load_head(name_or_path: str) -> Optional[torch.Tensor]:
    """The linear head `linear.weight` [dim, hidden] of a checkpoint (any layout, a bias or activation left out),
    or None for a plain backbone."""
    from colbert.modeling.layouts import read_layout

    head = read_layout(str(name_or_path))[1].head
    return None if head is None else head.weight


def load_backbone(name_or_path: str, backbone: str = "transformers") -> torch.nn.Module:
    """The transformer encoder of a checkpoint or backbone, through transformers' Auto classes, or through
    colbert.modeling.jina_xlmr for `backbone="jina-xlm-roberta"` (what layouts.read_layout says of the checkpoint).

    Raises CheckpointError when the folder lacks config or weights, or when encoder weights are missing (which
    would otherwise leave them randomly initialised).
    """
    from transformers import AutoConfig, AutoModel

    name_or_path = str(name_or_path)
    if backbone == "jina-xlm-roberta":
        from colbert.modeling.jina_xlmr import load_jina_xlmr

        return load_jina_xlmr(name_or_path)
    if os.path.isdir(name_or_path) and not os.path.isfile(os.path.join(name_or_path, CONFIG_FILE)):
        raise CheckpointError(
            f"{name_or_path} has no {CONFIG_FILE}; it is not a checkpoint folder. Pass the folder that holds "
            "config.json, the weights and the tokenizer files."
        )
    try:
        hf_config = AutoConfig.from_pretrained(name_or_path)
    except ValueError as e:  # unknown model_type
        raise CheckpointError(f"{name_or_path}: unsupported backbone ({e}). Use a BERT-family encoder.") from e
    except OSError as e:
        raise CheckpointError(f"Could not load the config of {name_or_path}: {e}") from e
    kwargs: dict[str, Any] = {}
    if hf_config.model_type in ("bert", "roberta", "xlm-roberta"):
        kwargs["add_pooling_layer"] = False  # ColBERT uses token states only
    try:
        with _quiet_transformers():
            model, info = AutoModel.from_pretrained(name_or_path, config=hf_config, output_loading_info=True,
                                                    **kwargs)
    except Exception as e:  # missing file (OSError), damaged file (SafetensorError, RuntimeError, pickle errors)
        raise CheckpointError(
            f"Could not load the weights of {name_or_path}: {e}. It needs a complete model.safetensors or "
            "pytorch_model.bin; re-download or re-save the checkpoint."
        ) from e
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k and "pooler" not in k]
    if missing:
        raise CheckpointError(
            f"{name_or_path}: {len(missing)} encoder weights are missing from its weight file (first: {missing[0]}); "
            "the file is incomplete or belongs to another architecture. Re-download or re-save the checkpoint."
        )
    return model


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' load report and weight-loading bar: a ColBERT checkpoint always has 'unexpected'
    keys (linear.weight, the pooler), and we check the missing ones ourselves."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"Could not load the tokenizer of {name_or_path}: {e}. The folder needs tokenizer.json or vocab.txt "
            "with tokenizer_config.json."
        ) from e


def save_checkpoint(path: str | os.PathLike, backbone: torch.nn.Module, linear_weight: torch.Tensor,
                    tokenizer: Any, config: ColBERTConfig) -> None:
    """Write the reference's layout: config.json, model.safetensors (prefixed backbone + linear.weight),
    tokenizer files and artifact.metadata, so that colbert-ai's `Checkpoint(path)` loads it."""
    from safetensors.torch import save_file

    from colbert.utils.io import atomic_write

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    prefix = getattr(backbone, "base_model_prefix", "bert") or "bert"
    tensors = {f"{prefix}.{k}": v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()
               if not k.endswith("position_ids")}
    tensors[HEAD_KEY] = linear_weight.detach().cpu().float().contiguous().clone()
    tmp = path / f".{SAFETENSORS_FILE}.{os.getpid()}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path / SAFETENSORS_FILE)
    hf_config = backbone.config.to_dict()
    hf_config["architectures"] = ["HF_ColBERT"]
    with atomic_write(path / CONFIG_FILE) as f:
        f.write(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(str(path))
    _save_slow_tokenizer_files(tokenizer, path)
    _name_tokenizer_class_for_transformers_4(path)
    config = ColBERTConfig.from_existing(config)
    config.configure(checkpoint=str(path.resolve()), model_name=str(path.resolve()))  # as the reference's save
    config.save_for_checkpoint(path)  # written last: a folder with artifact.metadata is complete


def _name_tokenizer_class_for_transformers_4(path: Path) -> None:
    """transformers 5 names a tokenizer without a class of its own (ModernBERT's) "TokenizersBackend", which
    transformers 4 (hence colbert-ai) does not know; "PreTrainedTokenizerFast" is the same class in both."""
    from colbert.utils.io import atomic_write

    config_path = path / "tokenizer_config.json"
    if not config_path.exists():
        return
    config = read_json(str(config_path), "tokenizer config")
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        with atomic_write(config_path) as f:
            f.write(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _save_slow_tokenizer_files(tokenizer: Any, path: Path) -> None:
    """vocab.txt and special_tokens_map.json, which transformers 5 no longer writes but transformers 4 (hence
    colbert-ai) and other readers of the BERT layout look for; vocab.txt only for a WordPiece vocabulary."""
    from colbert.utils.io import atomic_write

    if not (path / "special_tokens_map.json").exists():
        with atomic_write(path / "special_tokens_map.json") as f:
            f.write(json.dumps(tokenizer.special_tokens_map, indent=2) + "\n")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (path / "vocab.txt").exists() or backend is None or type(backend.model).__name__ != "WordPiece":
        return
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    if [i for _, i in vocab] != list(range(len(vocab))):
        return  # ids with gaps cannot be written as one token per line
    with atomic_write(path / "vocab.txt") as f:
        f.writelines(token + "\n" for token, _ in vocab)
