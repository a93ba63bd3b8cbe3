"""The ``cnnzoo`` command line. Thin: it parses, calls the library and prints.

Every error prints one line; the exit status (``exit_status``) is 2 for
anything the user gave wrong (a bad value, a missing or damaged file, bad
data, a full disk), 1 only for an internal error, 128 + N after signal N.
Set CNNZOO_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from . import analysis, registry
from .analysis.complexity import meta_model, trace
from .analysis.report import FORMATS, macs_text, reference_macs_text
from .engine import TrainingStopped, evaluate_checkpoint, load_config, resume_config, train
from .engine.trainer import load_trained
from .files import FileError
from .engine.config import parse_assignments
from .hub import WeightsNotFoundError


class UsageError(ValueError):
    """A mistake in what the user asked for; the message says what and how to fix it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see `{self.prog} --help`)")




def _mark(measured: float, reference: float | None, decimals: int = 0) -> str:
    if reference is None:
        return ""
    ok = round(measured, decimals) == round(reference, decimals)
    return "✓ match" if ok else "✗ MISMATCH"


def _decimals(x: float) -> int:
    return len(repr(x).partition(".")[2])


def _accuracy(cfg) -> str:
    return "" if cfg.top1 is None else f"{cfg.top1:.2f} / {cfg.top5:.2f}"


def cmd_list(args: argparse.Namespace) -> None:
    if args.pretrained:
        from .hub import get_pretrained_cfg, list_pretrained

        tagged = [get_pretrained_cfg(n) for n in list_pretrained(args.pattern) if n.partition(".")[0] in
                  registry.list_models()]
        if not tagged:
            raise UsageError(f"no published weights match {args.pattern!r}; `cnnzoo list --pretrained` shows them all")
        print(f"{'weights':<42} {'source':<17} {'licence':<13} {'input':>5} {'top-1 / top-5':>15}")
        for cfg in tagged:
            print(f"{cfg.name:<42} {cfg.source:<17} {cfg.license:<13} {cfg.input_size[-1]:>5} {_accuracy(cfg):>15}")
        return
    names = registry.list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r}; `cnnzoo list` shows them all")
    print(f"{'model':<28} {'params':>14} {'MACs':>9}  input")
    for name in names:
        model = meta_model(name)
        cfg = model.default_cfg
        print(f"{name:<28} {analysis.count_params(model):>14,} {macs_text(analysis.count_macs(model)):>9}  {cfg.img_size}")


def cmd_info(args: argparse.Namespace) -> None:
    kwargs = {"drop_path_rate": args.drop_path_rate} if args.drop_path_rate else {}
    model = meta_model(args.name, **kwargs)
    cfg = model.default_cfg
    size = cfg.img_size if args.input_size is None else args.input_size
    analysis.check_input_size(args.name, size)
    if args.format != "text" and not args.layers:
        raise UsageError("--format applies to the per-layer table: add --layers")
    if args.layers:
        from .analysis.layers import format_layer_table, layer_table

        print(format_layer_table(layer_table(model, size, args.name), args.format))
        return
    if args.compare:  # check it before printing anything
        other = meta_model(args.compare)
        analysis.check_input_size(args.compare, size)
    params = analysis.count_params(model)
    tr = trace(model, size)
    macs = tr.module_macs()
    at_ref_size = size == cfg.img_size

    print(f"{args.name}: {cfg.paper}" + (f" (arXiv {cfg.arxiv})" if cfg.arxiv else ""))
    print(f"  {'input':<13}{cfg.in_chans} x {size} x {size}" + ("" if at_ref_size else f"  (paper: {cfg.img_size})"))
    ref_params = f"reference {cfg.params:,}" if cfg.params else "no reference"
    print(f"  {'params':<13}{params:<16,}{ref_params:<24}{_mark(params, cfg.params)}")
    if cfg.paper_params is not None:  # the paper's rounded figure, beside the exact count
        d, mparams = _decimals(cfg.paper_params), params / 1e6
        print(f"  {'':<13}{f'{mparams:.{d}f} M':<16}{f'paper {cfg.paper_params} M':<24}"
              f"{_mark(mparams, cfg.paper_params, d)}")
    gmacs = macs[""] / 1e9
    if cfg.macs and at_ref_size:
        d = _decimals(cfg.macs)
        ref = f"reference {reference_macs_text(cfg.macs)}"
        print(f"  {'MACs':<13}{macs_text(macs[''], d):<16}{ref:<24}{_mark(gmacs, cfg.macs, d)}")
    else:
        note = f"reference {reference_macs_text(cfg.macs)} is at {cfg.img_size}" if cfg.macs else "no reference"
        print(f"  {'MACs':<13}{macs_text(macs['']):<16}{note}")
    print(f"  {'depth':<13}{tr.total.depth} weight layers on the longest path")
    for label, err in (("top-1 error", cfg.top1_err), ("top-5 error", cfg.top5_err)):
        if err is not None:
            print(f"  {label:<13}{'':<16}paper {err}%" + (f"  ({cfg.eval_note})" if cfg.eval_note else ""))
    _print_weights(args.name)
    if args.drop_path_rate:
        from .analysis.stochastic_depth import drop_path_cost

        cost = drop_path_cost(model, macs)
        if cost is None:
            raise UsageError(f"{args.name} has no residual blocks to drop; --drop-path-rate applies to residual families")
        print(f"  {'stoch. depth':<13}{cost.gates} {'paths' if cost.paths else 'blocks'}, expected active E[L~] ="
              f" {cost.expected_active:.2f} (p_L = {1 - args.drop_path_rate:g}, {cost.mode} mode)")
        if cost.mode == "batch":
            print(f"  {'train MACs':<13}{(macs[''] - cost.saved_macs) / 1e9:.3f} G expected per image,"
                  f" {1 - cost.saved_macs / macs['']:.1%} of the full network's {gmacs:.3f} G")
    if args.compare:
        _print_comparison(args.name, model, args.compare, other, size)


def _print_weights(name: str) -> None:
    """The published weights of ``name``: tag, source, licence, preprocessing and accuracy."""
    from .hub import get_pretrained_cfg, pretrained_tags

    for i, tag in enumerate(pretrained_tags(name)):
        cfg = get_pretrained_cfg(name, tag)
        size = cfg.input_size[-1]
        accuracy = f"top-1 {cfg.top1}%, top-5 {cfg.top5}%" if cfg.top1 is not None else "no published accuracy"
        label = "weights" if i == 0 else ""
        print(f"  {label:<13}{cfg.name}{' (default)' if i == 0 else ''}: {cfg.source}, {cfg.license}; {accuracy}"
              f" at {size} (crop {cfg.crop_pct}, {cfg.interpolation})")


def _print_comparison(name: str, model: torch.nn.Module, other_name: str, other: torch.nn.Module, size: int) -> None:
    """Both models' params and MACs, per shared top-level module, and what ``name`` saves against ``other_name``."""
    rows = analysis.compare_models(model, other, size)
    w = max(len(name), len(other_name), 11) + 2
    print(f"\n{name} against {other_name} at {size} x {size} (params, then GMACs):")
    print(f"  {'module':<14}{name:>{w}}{other_name:>{w}}  {name:>{w}}{other_name:>{w}}")
    for module, (params, other_params, macs, other_macs) in rows.items():
        print(f"  {module or 'total':<14}{params:>{w},}{other_params:>{w},}  {macs / 1e9:>{w}.3f}{other_macs / 1e9:>{w}.3f}")
    params, other_params, macs, other_macs = rows[""]
    for what, ours, theirs, show in (("params", params, other_params, "{:,}".format),
                                     ("MACs", macs, other_macs, lambda n: f"{n / 1e9:.3f} G")):
        diff = theirs - ours
        amount = show(abs(diff))
        share = f"({abs(diff) / theirs:.1%} of {other_name}'s)" if theirs else ""
        if diff == 0:
            print(f"  {name} and {other_name} have the same {what}")
        else:
            print(f"  {name} {'saves' if diff > 0 else 'costs'} {amount}{'' if diff > 0 else ' more'} {what} {share}")


def cmd_compare(args: argparse.Namespace) -> None:
    from .analysis.compare import compare, format_comparison, plot_comparison

    for name in args.names:
        if args.input_size is not None:
            analysis.check_input_size(name, args.input_size)
    rows = compare(args.names, args.input_size, speed=not args.no_speed, batch_size=args.batch_size,
                   steps=args.steps, device=args.device)
    print(format_comparison(rows, args.format))
    if args.plot:
        left_out = plot_comparison(rows, args.plot, f"{args.metric}_err")
        note = f"; left out (no paper {args.metric} error): {', '.join(left_out)}" if left_out else ""
        print(f"plot written to {args.plot}{note}", file=sys.stderr)


def cmd_explain(args: argparse.Namespace) -> None:
    from .analysis.explain import TOPICS, explain, format_explanation

    if args.topic is None:
        print("topics (cnnzoo explain TOPIC):")
        for topic, (_, about) in TOPICS.items():
            print(f"  {topic:<11}{about}")
        return
    options = {k: v for k, v in (("channels", args.channels), ("size", args.size)) if v is not None}
    try:
        e = explain(args.topic, **options)
    except TypeError:  # an option this topic does not take
        raise UsageError(f"topic {args.topic!r} takes only --size (its channels are the paper's)") from None
    print(format_explanation(e, args.format))


def cmd_bench(args: argparse.Namespace) -> None:
    from .analysis.bench import benchmark, format_results
    from .deploy import deploy

    if args.threads:
        torch.set_num_threads(args.threads)
    size = registry.model_cfg(args.name).img_size if args.input_size is None else args.input_size
    analysis.check_input_size(args.name, size)
    model, name, channels_last = registry.create_model(args.name), args.name, args.channels_last
    if args.deploy:
        if args.mode != "infer":
            raise UsageError("--deploy makes an inference-only model: use it with --mode infer")
        model, name, channels_last = deploy(model, size, channels_last=True), f"{args.name} (deployed)", True
    result = benchmark(model, args.mode, args.batch_size, size, channels_last, args.amp, args.compile,
                       args.device, args.warmup, args.steps, name=name)
    print(format_results([result], args.format))


def cmd_export(args: argparse.Namespace) -> None:
    from .deploy import deploy, export

    size = registry.model_cfg(args.name).img_size if args.input_size is None else args.input_size
    analysis.check_input_size(args.name, size)
    if args.checkpoint:  # any weight file (cnnzoo.files.load_file); a cnnzoo run's classes and channels
        model, _ = load_trained(args.checkpoint, args.name)
    else:
        model = registry.create_model(args.name)
        print(f"cnnzoo: note: no --checkpoint given, exporting {args.name} with random weights", file=sys.stderr)
    if not args.no_deploy:
        model = deploy(model, size, channels_last=False)  # BN folded, dropout and aux heads gone
    suffix = {"onnx": ".onnx", "torchscript": ".pt"}[args.format]
    path = export(model, args.output or f"{args.name}{suffix}", args.format, size)
    print(f"{args.name} written to {path} ({args.format}, input N x {model.default_cfg.in_chans}"
          f" x {size} x {size})")


def cmd_table(args: argparse.Namespace) -> None:
    from .analysis.table import model_table, update_readme
    from .files import write_bytes

    if args.write is None:
        print(model_table())
        return
    with open(args.write, encoding="utf-8") as f:
        text = f.read()
    write_bytes(args.write, update_readme(text).encode("utf-8"))
    print(f"model table in {args.write} regenerated ({len(registry.list_models())} models)")


def cmd_check_data(args: argparse.Namespace) -> int:
    from .data import check_folder, parse_spec

    kind, path = parse_spec(args.path)
    if kind != "folder":
        raise UsageError(f"check-data checks ImageFolder trees; {args.path!r} is a built-in data set")
    report = check_folder(path, workers=args.workers)
    print("\n".join(report.lines()))
    return 2 if report.problems else 0  # bad data is the user's to fix: the exit status of every user error


def cmd_train(args: argparse.Namespace) -> None:
    keys = ("model", "data", "epochs", "batch_size", "lr", "out", "seed", "device")
    flags = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    if args.strict_data:
        flags["strict_data"] = True
    overrides = parse_assignments(args.overrides)
    if args.resume:
        if args.config:
            raise UsageError("--resume continues a run with its own config.yaml; drop --config")
        cfg = resume_config(args.resume, flags, overrides)
    else:
        cfg = load_config(args.config, flags, overrides)
    result = train(cfg, resume=args.resume)
    if result.run_dir is None:  # DDP ranks other than 0 stay quiet
        return
    if not result.finished:
        print(f"stopped after epoch {result.epochs_done} of {cfg.epochs}: continue with"
              f" `cnnzoo train --resume {result.run_dir}`")
    print(result.summary())


def cmd_eval(args: argparse.Namespace) -> None:
    if args.pretrained:
        if args.checkpoint or not args.model or not args.data:
            raise UsageError("--pretrained evaluates published weights: give --model NAME and --data DIR,"
                             " without --checkpoint")
        if args.crops != "center":
            raise UsageError("--pretrained scores the weights' own single centre crop; drop --crops")
        from .engine.pretrained import evaluate_pretrained

        scores = evaluate_pretrained(args.model, args.data, None if args.pretrained is True else args.pretrained,
                                     batch_size=args.batch_size, device=args.device)
        w = scores["weights"]
        side = w["input_size"][-1]
        print(f"{w['architecture']}.{w['tag']} on {args.data}: {scores['images']} images, {side} crop"
              f" (crop_pct {w['crop_pct']}, {w['interpolation']}, mean {tuple(w['mean'])}, std {tuple(w['std'])})")
        print(f"  {'':<8}{'measured':>10}{'published':>11}")
        for key in ("top1", "top5"):
            published = "" if w[key] is None else f"{w[key]:.2f}"
            print(f"  {key:<8}{scores[key]:>10.2f}{published:>11}")
        print(f"top1={scores['top1']:.2f} top5={scores['top5']:.2f}")
        return
    if not args.checkpoint:
        raise UsageError("give --checkpoint RUN_DIR_OR_FILE, or --pretrained --model NAME for published weights")
    scores = evaluate_checkpoint(args.checkpoint, args.data, crops=args.crops, batch_size=args.batch_size,
                                 device=args.device, model=args.model)
    print(f"top1={scores['top1']:.2f} top5={scores['top5']:.2f}")


def cmd_reproduce(args: argparse.Namespace) -> None:
    from . import reproduce  # trains: imported only when asked

    if args.index:
        print(f"index={reproduce.write_index(Path(args.index))}")
        return
    if args.list or not args.name:
        print("\n".join(reproduce.describe()))
        return
    out = reproduce.run(args.name, args.scale, args.data, args.out)
    print(f"report={out / 'report.md'}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnzoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="registered models with params and MACs")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--pretrained", action="store_true",
                   help="the published weights instead: NAME.TAG, source, licence, input size, top-1 / top-5")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="one model: params, MACs, paper and reference figures")
    p.add_argument("name")
    p.add_argument("--input-size", type=int, help="square input side (default: the paper's)")
    p.add_argument("--drop-path-rate", type=float, default=0.0,
                   help="stochastic depth 1 - p_L: report expected active blocks and training MACs")
    p.add_argument("--compare", metavar="OTHER",
                   help="also count OTHER and print what NAME saves against it, per shared module "
                        "(e.g. `info googlenet --compare googlenet_naive`: what the 1x1 reductions save)")
    p.add_argument("--layers", action="store_true", help="per-layer table: output shape, params, MACs, stage totals")
    p.add_argument("--format", choices=FORMATS, default="text", help="of the --layers table")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("compare", help="models side by side: params, MACs, depth, paper error, measured speed")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--input-size", type=int, help="one square input side for all (default: each model's own)")
    p.add_argument("--plot", metavar="FILE.png", help="draw params-vs-error and MACs-vs-error charts")
    p.add_argument("--metric", choices=("top1", "top5"), default="top1", help="the error the plot shows")
    p.add_argument("--no-speed", action="store_true", help="skip measuring inference images/s")
    p.add_argument("--batch-size", type=int, default=1, help="of the speed measurement")
    p.add_argument("--steps", type=int, default=3, help="timed batches per model")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("explain", help="the textbook design comparisons, measured on real modules")
    p.add_argument("topic", nargs="?", help="leave out to list the topics")
    p.add_argument("--channels", type=int,
                   help="channel count (3x3, separable, shufflenet, mobilenet M = N; densenet: input channels k0)")
    p.add_argument("--size", type=int, help="spatial size of the input feature map")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("bench", help="time training or inference steps: images/s, step ms, memory, GFLOP/s")
    p.add_argument("name")
    p.add_argument("--mode", choices=("infer", "train"), default="infer")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--input-size", type=int, help="square input side (default: the paper's)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (compiled during warm-up)")
    p.add_argument("--deploy", action="store_true", help="benchmark cnnzoo.deploy(model) (inference)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--steps", type=int, default=10, help="timed steps (the median is reported)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--format", choices=("text", "csv", "json"), default="text")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("export", help="write an inference model as ONNX or TorchScript")
    p.add_argument("name")
    p.add_argument("--checkpoint", help="weights: .safetensors, or a torch file with a state dict")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--output", help="file to write (default: NAME.onnx / NAME.pt)")
    p.add_argument("--input-size", type=int, help="square input side (default: the paper's)")
    p.add_argument("--no-deploy", action="store_true", help="export as is, without folding BN into convs")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("table", help="the README's model table, generated from the registry")
    p.add_argument("--write", metavar="README", help="replace the table between the markers in this file")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("check-data", help="check an ImageFolder tree file by file, without training "
                                          "(exit 0 clean, 2 problems found)")
    p.add_argument("path", help="PATH or folder:PATH holding train/ and val/ (or test/)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("train", help="train a model with a recipe; ends with `top1=.. top5=.. run=DIR`",
                       description="Train; with no arguments ResNet-20 on the embedded digits (a few CPU minutes).")
    p.add_argument("--config", metavar="YAML", help="a recipe, e.g. configs/resnet_cifar10.yaml")
    p.add_argument("--model", help="registered model name (`cnnzoo list`)")
    p.add_argument("--data", metavar="SPEC", help="digits | cifar10[:PATH] | cifar100[:PATH] | folder:PATH | PATH")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch, split across DDP processes")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--out", metavar="DIR", help="parent folder of run folders (default runs)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--strict-data", action="store_true",
                   help="refuse to start if any image file is unreadable, listing them (default: skip and list)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="any config key, e.g. weight_decay=1e-4 milestones=[30,60] model_kwargs.aux_logits=true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="test top-1/top-5 of a run folder or weight file; ends with `top1=.. top5=..`")
    p.add_argument("--checkpoint", metavar="RUN_DIR_OR_FILE",
                   help="a run folder (its last.ckpt), a .ckpt or a .safetensors file")
    p.add_argument("--pretrained", nargs="?", const=True, default=False, metavar="TAG",
                   help="the published weights of --model (default tag, or TAG) on --data DIR, a folder of class"
                        " folders (or DIR/val/); prints measured against published accuracy")
    p.add_argument("--data", metavar="SPEC", help="data spec (default: the one the model was trained on)")
    p.add_argument("--crops", choices=["center", "ten"], default="center", help="ten: AlexNet/GoogLeNet 10-crop")
    p.add_argument("--model", help="model name, for weight files that do not record it")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("reproduce", help="a paper's experiment by name, with a report of the paper's figures and ours")
    p.add_argument("name", nargs="?", help="the experiment (`--list` shows them)")
    p.add_argument("--list", action="store_true", help="each experiment: claim, paper figure, cost of each scale")
    p.add_argument("--scale", choices=("smoke", "cpu", "paper"), default="smoke",
                   help="smoke: seconds, checks the pipeline; cpu: reduced, about an hour; paper: the full setting")
    p.add_argument("--data", help="data spec (cpu and paper scales: CIFAR-10, e.g. cifar10:DIR or folder:PATH)")
    p.add_argument("--out", help="report folder (default: reproductions/NAME for cpu, reproductions/NAME-SCALE else)")
    p.add_argument("--index", metavar="DIR", help="write DIR/README.md: one row per report folder in DIR")
    p.set_defaults(func=cmd_reproduce)
    return parser


def exit_status(error: BaseException) -> tuple[int, str]:
    """The one mapping from an error to the exit status and the line printed: 2 for what the user gave wrong
    (a bad value, a missing or damaged file, bad data, a full disk), 1 for an internal error (a bug),
    128 + N for a signal; a run stopped by its own numbers says so (exit 2: lower the learning rate)."""
    if isinstance(error, (TrainingStopped, FileError, WeightsNotFoundError)):  # a stopped run; a file that cannot
        # be written, trusted or found
        return getattr(error, "exit_code", 2), f"cnnzoo: {error}"
    if isinstance(error, ValueError):  # UsageError, ConfigError, DataError and the library's argument errors
        return 2, f"cnnzoo: error: {error}"
    if isinstance(error, BrokenPipeError):  # the reader went away (`cnnzoo list | head`): nothing to say
        return 0, ""
    if isinstance(error, OSError):  # a file or folder the user named that cannot be read or written
        where = f": {error.filename}" if error.filename else ""
        return 2, f"cnnzoo: error: {error.strerror or error}{where}"
    if isinstance(error, KeyboardInterrupt):
        return 130, "cnnzoo: interrupted"
    return 1, (f"cnnzoo: internal error: {type(error).__name__}: {error} (a bug in cnnzoo: please report it;"
               " CNNZOO_DEBUG=1 shows the traceback)")


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error ends as one line on stderr and the status of ``exit_status``."""
    try:
        args, extra = build_parser().parse_known_args(argv)
        # argparse stops collecting KEY=VALUE positionals at the first option after them; gather the rest
        if extra and getattr(args, "overrides", None) is not None and all("=" in a and a[0] != "-" for a in extra):
            args.overrides += extra
        elif extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see `cnnzoo {args.command} --help`)")
        return args.func(args) or 0
    except (Exception, KeyboardInterrupt) as e:
        if os.environ.get("CNNZOO_DEBUG"):
            raise
        status, line = exit_status(e)
        if line:
            print(" ".join(line.split("\n")), file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
