"""`python -m colbert.kernels [--json]`: load the kernels and print which ops are native on which device, and why
the others are not. Set COLBERT_KERNELS=auto|native|reference to try a tier; `-v` shows the loader's log."""

from __future__ import annotations

import argparse
import json
import logging

import torch

from colbert.kernels import backend_info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m colbert.kernels", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print backend_info() as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the loader tries")
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    info = backend_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"mode:   {info['mode']} (COLBERT_KERNELS)")
    print(f"source: {info['source']}")
    print(f"torch:  {info['torch']} (CUDA {info['cuda'] or 'none'})")
    if info["cpu_threads"] is not None:
        print(f"threads: {info['cpu_threads']} in the native CPU kernels' parallel loops "
              f"(torch.get_num_threads() = {torch.get_num_threads()})")
    width = max(len(op) for op in info["ops"])
    devices = list(next(iter(info["ops"].values())))
    for op, where in info["ops"].items():
        cells = "  ".join(f"{device}: {where[device]}" for device in devices)
        print(f"  {op:<{width}}  {cells}")


if __name__ == "__main__":
    main()
