"""Command line: ``jaxscale <command> ... [--json]``.

A thin face over the library: every leaf command returns a JSON-serialisable dict; with ``--json``
it is printed as one JSON object on stdout, otherwise as readable lines. Logs and progress go to
stderr. Bad input exits with status 2 and ``error: <message>`` on stderr.

Compiled programs are kept in JAX's persistent compilation cache, in the per-user cache folder
(``~/.cache/jaxscale/xla`` on Linux; ``JAXSCALE_CACHE_DIR`` moves it, ``JAXSCALE_NO_CACHE=1`` turns
it off), so a command's second run skips most of its compilation.

Run as a command, the package's warnings come as ``[jaxscale] warning: <message>`` on stderr (not
Python's ``file:line: UserWarning`` form, which names the package's source); a command-line mistake
under ``--json`` also prints ``{"error": ...}`` on stdout.

Command groups live one per module: :mod:`.chinchilla`, :mod:`.lc`, :mod:`.obs`, :mod:`.context`,
:mod:`.ncpl`; :mod:`.demo` builds the report of ``jaxscale demo``; :mod:`._common` holds the
options every command shares (``--csv``, ``--where``, ``--holdout``, ``--predictions``, ``--save``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main", "build_parser", "GROUPS"]

#: Command-group modules, each with ``register(subparsers)``, and their one-line help. A group's
#: module (and with it JAX and the pillar) is imported only when that group is on the command
#: line, so ``jaxscale --help`` stays fast.
GROUPS = {
    "chinchilla": "Chinchilla L(N, D) = E + A/N^alpha + B/D^beta: fit, predict, compute-optimal",
    "lc": "learning curves: zero-shot curve models, probabilistic scaling laws, active learning",
    "obs": "observational scaling laws (principal capabilities -> sigmoid)",
    "context": "context-aware scaling law (compute, prompt length, context limit)",
    "ncpl": "NCPL: configuration -> loss with a text encoder and a deep ensemble",
    "bench": "time each pillar's headline fit on this device (compile vs run, growth with size)",
}


def _datasets(args) -> dict:
    from jaxscale.data import list_datasets

    rows = list_datasets()
    return {"datasets": [{"name": r["name"], "rows": r["rows"], "columns": r["columns"],
                          "description": r["description"]} for r in rows]}


def _demo(args) -> dict:
    from jaxscale.cli.demo import run_demo

    return run_demo(args.out, seed=args.seed, smoke=args.smoke, only=args.only, overwrite=args.overwrite)


#: The command words of the line being parsed, and the last command-line mistake (for ``--json``).
_LINE: dict = {"words": [], "error": None}


class _Parser(argparse.ArgumentParser):
    """argparse's parser (every subcommand's too) that keeps its error message for ``--json`` and
    points an unknown option at the command's own ``--help``: argparse reports unrecognised
    arguments from the top-level parser, whose usage line lists no command's options."""

    def error(self, message):
        if message.startswith("unrecognized arguments") and _LINE["words"]:
            message += f" (the options of a command: jaxscale {' '.join(_LINE['words'][:2])} --help)"
        _LINE["error"] = message
        super().error(message)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """The package's warnings as ``[jaxscale] warning: ...``; other packages' in Python's own form."""
    import warnings

    out = sys.stderr if file is None else file
    if f"{os.sep}jaxscale{os.sep}" not in str(filename):
        out.write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    kind = "" if category is UserWarning else f" ({category.__name__})"
    out.write(f"[jaxscale] warning{kind}: {message}\n")


def build_parser(groups=None) -> argparse.ArgumentParser:
    """The parser; ``groups`` names the command groups registered in full (default: all). The
    others appear in ``--help`` with their one-line description only."""
    from jaxscale._version import __version__
    from jaxscale.cli._common import Formatter, add_json
    from jaxscale.cli.demo import SECTIONS

    parser = _Parser(prog="jaxscale", description=__doc__.splitlines()[0], formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"jaxscale {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the bundled datasets", formatter_class=Formatter)
    add_json(p)
    p.set_defaults(func=_datasets)

    p = sub.add_parser("demo", help="run the headline of every pillar and write a report", formatter_class=Formatter)
    p.add_argument("--out", default="report", help="report folder")
    p.add_argument("--seed", type=int, default=0, help="root seed of every section")
    p.add_argument("--smoke", action="store_true", help="tiny settings (for tests)")
    p.add_argument("--only", nargs="*", default=None, choices=list(SECTIONS), metavar="SECTION",
                   help=f"sections to run (default: all of {', '.join(SECTIONS)})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
    add_json(p)
    p.set_defaults(func=_demo)

    for group, text in GROUPS.items():
        if groups is None or group in groups:
            importlib.import_module(f"jaxscale.cli.{group}").register(sub)
        else:
            sub.add_parser(group, help=text, formatter_class=Formatter)
    _finish(parser, Formatter, add_json)
    return parser


def _finish(parser: argparse.ArgumentParser, formatter, add_json) -> None:
    """Give every leaf command ``--json`` and the defaults-showing help formatter."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.formatter_class = formatter
                if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                    _finish(child, formatter, add_json)
                elif "--json" not in child._option_string_actions:
                    add_json(child)


def _print_human(result, indent: int = 0) -> None:
    pad = "  " * indent
    for k, v in result.items():
        if isinstance(v, dict):
            print(f"{pad}{k}:")
            _print_human(v, indent + 1)
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            print(f"{pad}{k}:")
            for item in v:
                print(f"{pad}  - " + ", ".join(f"{a}={b}" for a, b in item.items() if not isinstance(b, (list, dict))))
        else:
            print(f"{pad}{k}: {v}")


def _interrupted(args) -> str:
    """What an interrupted command says: where its checkpoints are, if it wrote any."""
    folder = getattr(args, "ckpt_dir", None) or (getattr(args, "out_dir", None) if args.command == "lc" else None)
    if folder:
        return f"interrupted; the same command again resumes from the last checkpoint in {folder}"
    return "interrupted (this command keeps no checkpoints: run it again to start over)"


def main(argv=None) -> int:
    """Entry point of the ``jaxscale`` command."""
    if argv is None:  # run as a command: the package's warnings without its source lines
        import warnings

        warnings.showwarning = _show_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    words = [a for a in argv if not a.startswith("-")]
    parser = build_parser([words[0]] if words and words[0] in GROUPS else ())
    _LINE.update(words=words, error=None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version exit 0; a mistake exits 2 (argparse printed it)
        if exc.code and "--json" in argv and _LINE["error"]:
            from jaxscale._json import dumps

            print(dumps({"error": _LINE["error"]}))
        raise
    from jaxscale.config import enable_compilation_cache, enable_x64

    enable_x64()
    enable_compilation_cache()
    from jaxscale._json import dumps, to_jsonable

    try:
        result = args.func(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):  # a script reading stdout gets one JSON object either way
            print(dumps({"error": str(exc)}))
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; the shell's code for SIGINT
        msg = _interrupted(args)
        print(f"\nerror: {msg}", file=sys.stderr)
        if getattr(args, "json", False):
            print(dumps({"error": msg}))
        return 130

    if getattr(args, "json", False):
        print(dumps(result))
    else:
        _print_human(to_jsonable(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
