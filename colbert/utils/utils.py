"""The reference's `colbert.utils.utils`: small helpers that scripts written for colbert-ai import.

Kept for drop-in compatibility (docs/compat.md); the library itself does not use them. One difference:
`print_message` logs at INFO through the `colbert` logger instead of printing (the library never prints), so a
script sees its messages once it configures logging (e.g. `logging.basicConfig(level=logging.INFO)`).
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
from collections import OrderedDict, defaultdict
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import torch

logger = logging.getLogger(__name__)

__all__ = ["print_message", "timestamp", "file_tqdm", "torch_load_dnn", "save_checkpoint", "load_checkpoint",
           "load_checkpoint_raw", "create_directory", "f7", "batch", "dotdict", "dotdict_lax", "flatten", "zipstar",
           "zip_first", "int_or_float", "load_ranking", "save_ranking", "groupby_first_item",
           "process_grouped_by_first_item", "grouper", "lengths2offsets", "NullContextManager",
           "load_batch_backgrounds"]


def print_message(*s: Any, condition: bool = True, pad: bool = False) -> str:
    """Log the arguments, joined by spaces and prefixed with a timestamp, at INFO; return the message."""
    message = f"[{datetime.datetime.now().strftime('%b %d, %H:%M:%S')}] {' '.join(str(x) for x in s)}"
    if condition:
        logger.info("\n%s\n" if pad else "%s", message)
    return message


def timestamp(daydir: bool = False) -> str:
    """Now as 'YYYY-MM-DD_HH.MM.SS' (or 'YYYY-MM/DD/HH.MM.SS' with daydir)."""
    fmt = "%Y-%m/%d/%H.%M.%S" if daydir else "%Y-%m-%d_%H.%M.%S"
    return datetime.datetime.now().strftime(fmt)


def file_tqdm(file: Any) -> Iterator[str]:
    """The lines of an open file, with a progress bar in MiB read."""
    from tqdm import tqdm

    with tqdm(total=os.path.getsize(file.name) / 1024 / 1024, unit="MiB") as bar:
        for line in file:
            yield line
            bar.update(len(line) / 1024 / 1024)


def torch_load_dnn(path: str) -> Any:
    """torch.load a local file onto the CPU (the reference also fetched http(s) URLs; hubs are for Checkpoint)."""
    if path.startswith(("http:", "https:")):
        return torch.hub.load_state_dict_from_url(path, map_location="cpu")
    return torch.load(path, map_location="cpu", weights_only=False)


def save_checkpoint(path: str, epoch_idx: int, mb_idx: int, model: Any, optimizer: Any,
                    arguments: Optional[dict] = None) -> None:
    """Save a training state in the reference's old `.dnn` layout: epoch, batch, model and optimizer states."""
    model = getattr(model, "module", model)
    torch.save({"epoch": epoch_idx, "batch": mb_idx, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(), "arguments": arguments}, path)


def load_checkpoint_raw(path: str) -> dict:
    """A `.dnn` checkpoint with 'module.' prefixes (from DataParallel) stripped from its model keys."""
    checkpoint = torch_load_dnn(path)
    state = checkpoint["model_state_dict"]
    checkpoint["model_state_dict"] = OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state.items())
    return checkpoint


def load_checkpoint(path: str, model: Any, checkpoint: Optional[dict] = None, optimizer: Any = None,
                    do_print: bool = True) -> dict:
    """Load a `.dnn` checkpoint's model (and optimizer) state into `model`; return the checkpoint."""
    checkpoint = checkpoint if checkpoint is not None else load_checkpoint_raw(path)
    getattr(model, "module", model).load_state_dict(checkpoint["model_state_dict"])
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    print_message(f"#> Loaded checkpoint {path}: epoch {checkpoint['epoch']}, batch {checkpoint['batch']}",
                  condition=do_print)
    return checkpoint


def create_directory(path: str) -> None:
    os.makedirs(path, exist_ok=True)


def f7(seq: Iterable[Any]) -> list:
    """The items in first-seen order, without repeats."""
    return list(dict.fromkeys(seq))


def batch(group: Sequence[Any], bsize: int, provide_offset: bool = False) -> Iterator[Any]:
    """Slices of `bsize` items ((offset, slice) pairs with provide_offset)."""
    for offset in range(0, len(group), bsize):
        yield (offset, group[offset:offset + bsize]) if provide_offset else group[offset:offset + bsize]


class dotdict(dict):
    """A dict whose keys read as attributes; a missing key raises AttributeError (KeyError's message)."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or key not in self:
            raise AttributeError(key)
        return self[key]

    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__


class dotdict_lax(dict):
    """A dict whose keys read as attributes; a missing key reads as None."""

    __getattr__ = dict.get
    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__


def flatten(nested: Iterable[Iterable[Any]]) -> list:
    return [x for inner in nested for x in inner]


def zipstar(rows: Sequence[Sequence[Any]], lazy: bool = False) -> Any:
    """Transpose a list of tuples into tuples of columns (lists unless lazy)."""
    if not rows:
        return rows
    columns = zip(*rows)
    return columns if lazy else [list(c) for c in columns]


def zip_first(first: Sequence[Any], second: Iterable[Any]) -> list:
    """zip that requires `second` to be at least as long as `first` when both have a length."""
    pairs = list(zip(first, second))
    if hasattr(second, "__len__") and len(pairs) != len(first):
        raise ValueError(f"zip_first: {len(first)} items but only {len(pairs)} pairs")
    return pairs


def int_or_float(value: str) -> float:
    return float(value) if "." in value else int(value)


def load_ranking(path: str, types: Optional[Sequence[Callable]] = None, lazy: bool = False) -> Any:
    """A ranking TSV (or a torch file of lists) as rows of typed fields (default: int, else float)."""
    if path.endswith((".pt", ".dnn")):
        rows = torch.load(path, weights_only=False)
    else:
        rows = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.strip().split("\t")
                casts = types if types is not None else [int_or_float] * len(fields)
                rows.append([cast(x) for cast, x in zip(itertools.cycle(casts), fields)])
    return zipstar(rows, lazy) if lazy else rows


def save_ranking(ranking: Iterable[Sequence[Any]], path: str) -> list:
    """torch.save the rows as lists; returns them."""
    rows = [list(row) for row in ranking]
    torch.save(rows, path)
    return rows


def groupby_first_item(rows: Iterable[Sequence[Any]]) -> dict:
    """{first field: [rest of each row (one value when the rest is one field)]}, in order."""
    groups: dict = defaultdict(list)
    for first, *rest in rows:
        groups[first].append(rest[0] if len(rest) == 1 else rest)
    return groups


def process_grouped_by_first_item(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[Any, list]]:
    """(first field, [rest of each row]) for each run of rows sharing their first field; a first field may not
    come back after another one."""
    seen: set = set()
    for first, group in itertools.groupby(rows, key=lambda row: row[0]):
        if first in seen:
            raise ValueError(f"process_grouped_by_first_item: {first!r} appears in two separate runs")
        seen.add(first)
        yield first, [list(row[1:]) for row in group]


def grouper(iterable: Iterable[Any], n: int, fillvalue: Any = None) -> Iterator[tuple]:
    """Non-overlapping tuples of n items, the last padded with fillvalue."""
    return itertools.zip_longest(*[iter(iterable)] * n, fillvalue=fillvalue)


def lengths2offsets(lengths: Iterable[int]) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of the given lengths laid end to end.

    >>> list(lengths2offsets([2, 0, 3]))
    [(0, 2), (2, 2), (2, 5)]
    """
    offset = 0
    for length in lengths:
        yield offset, offset + length
        offset += length


class NullContextManager:
    """A context manager that does nothing (and returns the object it was given)."""

    def __init__(self, dummy_resource: Any = None) -> None:
        self.dummy_resource = dummy_resource

    def __enter__(self) -> Any:
        return self.dummy_resource

    def __exit__(self, *args: Any) -> None:
        return None


def load_batch_backgrounds(args: Any, qids: Iterable[Any]) -> Optional[list]:
    """Per query, the background passages listed in `args.qid2backgrounds` (texts from `args.collection`, or
    'title | text' of `args.collectionX`); None when the args have none."""
    if getattr(args, "qid2backgrounds", None) is None:
        return None
    backgrounds = []
    for qid in qids:
        pids = args.qid2backgrounds[qid]
        if pids and isinstance(pids[0], int):
            backgrounds.append(" [SEP] ".join(args.collection[pid] for pid in pids))
        else:
            backgrounds.append(" [SEP] ".join(args.collectionX.get(pid, "") for pid in pids))
    return backgrounds
