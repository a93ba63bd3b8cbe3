"""The ``cnnzoo`` command line. Thin: it parses, calls the library and prints.

Errors in what the user typed (an unknown model, an input too small, a bad
value) print one line and exit with status 2; set CNNZOO_DEBUG=1 for the
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from . import analysis, registry
from .analysis.complexity import meta_model, module_macs
from .layers.drop import StochasticDepth


class UsageError(ValueError):
    """A mistake in what the user asked for; the message says what and how to fix it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _check_input_size(name: str, size: int) -> None:
    if size < 1:
        raise UsageError(f"input size must be a positive number of pixels, got {size}")
    if size < registry.model_cfg(name).img_size and size < (least := analysis.min_input_size(name)):
        raise UsageError(f"input size {size} is too small for {name}: it needs at least {least}x{least}")


def _mark(measured: float, reference: float | None, decimals: int = 0) -> str:
    if reference is None:
        return ""
    ok = round(measured, decimals) == round(reference, decimals)
    return "✓ match" if ok else "✗ MISMATCH"


def _decimals(x: float) -> int:
    return len(repr(x).partition(".")[2])


def cmd_list(args: argparse.Namespace) -> None:
    names = registry.list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r}; `cnnzoo list` shows them all")
    print(f"{'model':<28} {'params':>14} {'GMACs':>9}  input")
    for name in names:
        model = meta_model(name)
        cfg = model.default_cfg
        print(f"{name:<28} {analysis.count_params(model):>14,} {analysis.count_macs(model) / 1e9:>9.3f}  {cfg.img_size}")


def cmd_info(args: argparse.Namespace) -> None:
    kwargs = {"drop_path_rate": args.drop_path_rate} if args.drop_path_rate else {}
    model = meta_model(args.name, **kwargs)
    cfg = model.default_cfg
    size = cfg.img_size if args.input_size is None else args.input_size
    _check_input_size(args.name, size)
    params = analysis.count_params(model)
    macs = module_macs(model, size)
    at_ref_size = size == cfg.img_size

    print(f"{args.name}: {cfg.paper}" + (f" (arXiv {cfg.arxiv})" if cfg.arxiv else ""))
    print(f"  {'input':<13}{cfg.in_chans} x {size} x {size}" + ("" if at_ref_size else f"  (paper: {cfg.img_size})"))
    ref_params = f"reference {cfg.params:,}" if cfg.params else "no reference"
    print(f"  {'params':<13}{params:<16,}{ref_params:<24}{_mark(params, cfg.params)}")
    gmacs = macs[""] / 1e9
    if cfg.macs and at_ref_size:
        d = _decimals(cfg.macs)
        print(f"  {'MACs':<13}{f'{gmacs:.{d}f} G':<16}{f'reference {cfg.macs} G':<24}{_mark(gmacs, cfg.macs, d)}")
    else:
        note = f"reference {cfg.macs} G is at {cfg.img_size}" if cfg.macs else "no reference"
        print(f"  {'MACs':<13}{f'{gmacs:.3f} G':<16}{note}")
    for label, err in (("top-1 error", cfg.top1_err), ("top-5 error", cfg.top5_err)):
        if err is not None:
            print(f"  {label:<13}{'':<16}paper {err}%" + (f"  ({cfg.eval_note})" if cfg.eval_note else ""))
    gates = [(n, m) for n, m in model.named_modules() if isinstance(m, StochasticDepth)]
    if args.drop_path_rate:
        if not gates:
            raise UsageError(f"{args.name} has no residual blocks to drop; --drop-path-rate applies to residual families")
        expected = sum(m.survival_prob for _, m in gates)
        saved = sum((1 - m.survival_prob) * macs.get(n, 0) for n, m in gates)
        print(f"  {'stoch. depth':<13}{len(gates)} blocks, expected active E[L~] = {expected:.2f}"
              f" (p_L = {1 - args.drop_path_rate:g}, {gates[0][1].mode} mode)")
        if gates[0][1].mode == "batch":
            print(f"  {'train MACs':<13}{(macs[''] - saved) / 1e9:.3f} G expected per image,"
                  f" {1 - saved / macs['']:.1%} of the full network's {gmacs:.3f} G")


def cmd_table(args: argparse.Namespace) -> None:
    from .analysis.table import model_table, update_readme

    if args.write is None:
        print(model_table())
        return
    with open(args.write, encoding="utf-8") as f:
        text = f.read()
    with open(args.write, "w", encoding="utf-8") as f:
        f.write(update_readme(text))
    print(f"model table in {args.write} regenerated ({len(registry.list_models())} models)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnzoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="registered models with params and MACs")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="one model: params, MACs, paper and reference figures")
    p.add_argument("name")
    p.add_argument("--input-size", type=int, help="square input side (default: the paper's)")
    p.add_argument("--drop-path-rate", type=float, default=0.0,
                   help="stochastic depth 1 - p_L: report expected active blocks and training MACs")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("table", help="the README's model table, generated from the registry")
    p.add_argument("--write", metavar="README", help="replace the table between the markers in this file")
    p.set_defaults(func=cmd_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except ValueError as e:  # UsageError, and the library's own argument errors
        if os.environ.get("CNNZOO_DEBUG"):
            raise
        print(f"cnnzoo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
