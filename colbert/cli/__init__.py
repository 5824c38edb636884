"""The `colbert` command line: argparse subcommands, each a thin call into the facades.

    colbert index --checkpoint CKPT --collection docs/ --index ./indexes/docs
    colbert search --index ./indexes/docs "what is late interaction?"
    colbert eval --index ./indexes/scifact --queries queries.tsv --qrels qrels.tsv

Adding a subcommand: write `colbert/cli/<name>.py` with `register(subparsers) -> None` (which calls `add_command`
below and `parser.set_defaults(handler=...)`), and add `"<name>"` to SUBCOMMANDS. A handler takes the parsed
arguments and returns None (exit 0) or an exit code; it prints what it was asked for through `emit`, and imports
the heavy modules (torch, the facades) inside itself so that `colbert --help` stays fast.

Exit codes: 0 success; 2 usage error (argparse's, or `UsageError` from a handler); 1 any other failure, reported as
one line on stderr naming the problem, with the traceback only under `--debug`. Logging and progress bars go to
stderr; stdout holds only the results (a readable table, or JSON with `--json`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import traceback
from typing import Any, Callable, Iterator, Optional, Sequence

PROG = "colbert"

# One module per subcommand, in the order `colbert --help` lists them. One name per line, to keep merges easy.
SUBCOMMANDS = (
    "index",
    "search",
    "rerank",
    "update",
    "verify",
    "info",
    "eval",
    "train",
    "serve",
    "export",
    "checkpoint",
    "demo",
    "explain",
    "bundle",
)


class UsageError(Exception):
    """Arguments that parse but do not make sense together; exit code 2, like argparse's own errors."""


# ------------------------------------------------------------------------------------------------- the parser


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes, before or after its name (`colbert --json search ...` or `... --json`).

    Defaults are SUPPRESSed so that a value given before the subcommand is not reset by the subparser's default;
    read them with `option(args, name)`.
    """
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print results as JSON on stdout (for scripts) instead of a table")
    group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="on failure, print the full traceback; log at DEBUG level")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more logging on stderr (-v info, -vv debug)")
    return common


_DEFAULTS = {"json": False, "debug": False, "verbose": 0}


def option(args: argparse.Namespace, name: str) -> Any:
    """A common option's value (see common_options), with its default when it was not given."""
    return getattr(args, name, _DEFAULTS[name])


def add_command(subparsers: Any, name: str, *, help: str, description: str, example: str) -> argparse.ArgumentParser:
    """A subcommand's parser with the common options and an `Example:` section at the end of its --help.

    Args:
        subparsers: what `register(subparsers)` was given.
        name: the subcommand's name.
        help: one line for `colbert --help`.
        description: a paragraph for `colbert NAME --help`.
        example: one or more command lines, shown verbatim.
    """
    example = "\n".join("  " + line for line in example.strip().splitlines())
    return subparsers.add_parser(name, help=help, description=description, epilog=f"example:\n{example}",
                                 parents=[common_options()], formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser(subcommands: Sequence[str] = SUBCOMMANDS) -> argparse.ArgumentParser:
    """The `colbert` parser with every subcommand's `register` applied."""
    from colbert import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common_options()], formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ColBERT late-interaction retrieval from the command line: build, search, update, check and "
                    "evaluate indexes, rerank texts, train models.",
        epilog=f"Run '{PROG} COMMAND --help' for a command's options and an example.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in subcommands:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


# ------------------------------------------------------------------------------------------------- output


def emit(args: argparse.Namespace, data: Any, table: Optional[Callable[[Any], str]] = None) -> None:
    """Print a handler's result on stdout: JSON with --json, else `table(data)` (or JSON when there is none)."""
    if option(args, "json") or table is None:
        print(json.dumps(data, indent=None if option(args, "json") else 2, ensure_ascii=False, default=str))
        return
    text = table(data)
    if text:
        print(text)


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Rows as aligned columns under a header; numbers right-aligned, floats with 4 decimals.

    >>> print(format_table([[1, "doc-3", 0.5], [2, "doc-10", 0.25]], ["rank", "doc_id", "score"]))
    rank  doc_id   score
       1  doc-3   0.5000
       2  doc-10  0.2500
    """
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows) if rows
               else False for i in range(len(header))]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(list(header)), *(line(row) for row in cells)])


def format_fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """`name: value` lines with the values aligned.

    >>> print(format_fields([("documents", "5,183"), ("nbits", 2)]))
    documents  5,183
    nbits      2
    """
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(width)}  {_cell(value)}" for name, value in pairs)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def facade_verbose(args: argparse.Namespace) -> int:
    """The facades' `verbose`: progress bars when stderr is a terminal (or with -v), more with -v/-vv."""
    base = 1 if sys.stderr.isatty() else 0
    return min(3, base + option(args, "verbose"))


# ------------------------------------------------------------------------------------------------- main


@contextlib.contextmanager
def _logging_to_stderr(args: argparse.Namespace) -> Iterator[None]:
    """The 'colbert' logger writes to stderr at the level the options ask for, and is put back afterwards (main()
    may run inside another program or a test)."""
    level = logging.DEBUG if option(args, "debug") or option(args, "verbose") > 1 else (
        logging.INFO if option(args, "verbose") == 1 else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    logger = logging.getLogger("colbert")
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and message, line breaks folded."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    message = " ".join(str(message).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run `colbert ARGS`; return the exit code (0 success, 1 failure, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) or a usage error (2), already printed by argparse
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    with _logging_to_stderr(args):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        code = args.handler(args)
        sys.stdout.flush()
        return 0 if code is None else int(code)
    except UsageError as e:
        print(f"{PROG} {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `colbert search ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 (any failure becomes one line and exit code 1; --debug shows where)
        if option(args, "debug"):
            traceback.print_exc(file=sys.stderr)
        print(f"{PROG} {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 1
