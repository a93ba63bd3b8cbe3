"""The ``cnnzoo`` command line. Thin: it parses, calls the library and prints.

Each subcommand is a pair: ``add_NAME(sub)`` declares its arguments and
``cmd_NAME(args)`` runs it by calling library functions; ``SUBCOMMANDS`` lists
the pairs in ``--help`` order. To add a flag, extend the subcommand's ``add_``;
to add a subcommand, write the pair and list it.

Every error prints one line; the exit status (``exit_status``) is 2 for
anything the user gave wrong (a bad value, a missing or damaged file, bad
data, a full disk), 1 only for an internal error, 128 + N after signal N.
Set CNNZOO_DEBUG=1 for the traceback. A closed pipe (``cnnzoo list | head -1``)
ends quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import torch

from . import __version__, analysis, registry
from .analysis.report import FORMATS
from .device import DEVICES
from .engine import TrainingStopped, evaluate_checkpoint, load_config, resume_config, train
from .engine.config import parse_assignments
from .engine.trainer import load_trained
from .files import FileError
from .hub import WeightsNotFoundError


class UsageError(ValueError):
    """A mistake in what the user asked for; the message says what and how to fix it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def existing_path(text: str) -> str:
    """An argparse type: a file or folder that exists (a missing one is a usage error, exit 2)."""
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text!r} does not exist")
    return text


def input_size(args: argparse.Namespace, name: str) -> int:
    """``--input-size``, or the paper's; checked against what the model can take."""
    size = registry.model_cfg(name).img_size if args.input_size is None else args.input_size
    analysis.check_input_size(name, size)
    return size


# ----------------------------------------------------------------- models: list, info, compare, explain, table

def add_list(sub) -> None:
    p = sub.add_parser("list", help="registered models with params and MACs")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--pretrained", action="store_true",
                   help="the published weights instead: NAME.TAG, source, licence, input size, top-1 / top-5")
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> None:
    from .analysis.info import list_lines, pretrained_lines

    for line in (pretrained_lines if args.pretrained else list_lines)(args.pattern):
        print(line)


def add_info(sub) -> None:
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


def cmd_info(args: argparse.Namespace) -> None:
    from .analysis.complexity import meta_model
    from .analysis.info import info_lines
    from .analysis.layers import format_layer_table, layer_table

    if args.format != "text" and not args.layers:
        raise UsageError("--format applies to the per-layer table: add --layers")
    if args.layers:
        model = meta_model(args.name, **({"drop_path_rate": args.drop_path_rate} if args.drop_path_rate else {}))
        print(format_layer_table(layer_table(model, input_size(args, args.name), args.name), args.format))
        return
    print("\n".join(info_lines(args.name, args.input_size, args.drop_path_rate, args.compare)))


def add_compare(sub) -> None:
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


def add_explain(sub) -> None:
    p = sub.add_parser("explain", help="the textbook design comparisons, measured on real modules")
    p.add_argument("topic", nargs="?", help="leave out to list the topics")
    p.add_argument("--channels", type=int, help="channel count (3x3, separable; densenet: input channels k0)")
    p.add_argument("--size", type=int, help="spatial size of the input feature map")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.set_defaults(func=cmd_explain)


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


def add_table(sub) -> None:
    p = sub.add_parser("table", help="the README's model table, generated from the registry")
    p.add_argument("--write", metavar="README", type=existing_path,
                   help="replace the table between the markers in this file")
    p.set_defaults(func=cmd_table)


def cmd_table(args: argparse.Namespace) -> None:
    from .analysis.table import model_table, update_readme
    from .files import write_bytes

    if args.write is None:
        print(model_table())
        return
    path = Path(args.write)
    write_bytes(path, update_readme(path.read_text(encoding="utf-8")).encode("utf-8"))
    print(f"model table in {path} regenerated ({len(registry.list_models())} models)")


# ----------------------------------------------------------------- speed and deployment: bench, export

def add_bench(sub) -> None:
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


def cmd_bench(args: argparse.Namespace) -> None:
    from .analysis.bench import benchmark, format_results
    from .deploy import deploy

    if args.deploy and args.mode != "infer":
        raise UsageError("--deploy makes an inference-only model: use it with --mode infer")
    if args.threads:
        torch.set_num_threads(args.threads)
    size = input_size(args, args.name)
    model, name, channels_last = registry.create_model(args.name), args.name, args.channels_last
    if args.deploy:
        model, name, channels_last = deploy(model, size, channels_last=True), f"{args.name} (deployed)", True
    result = benchmark(model, args.mode, args.batch_size, size, channels_last, args.amp, args.compile,
                       args.device, args.warmup, args.steps, name=name)
    print(format_results([result], args.format))


def add_export(sub) -> None:
    p = sub.add_parser("export", help="write an inference model as ONNX or TorchScript")
    p.add_argument("name")
    p.add_argument("--checkpoint", type=existing_path,
                   help="weights: a run folder, .ckpt, .safetensors, or a torch file with a state dict")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--output", help="file to write (default: NAME.onnx / NAME.pt)")
    p.add_argument("--input-size", type=int, help="square input side (default: the paper's)")
    p.add_argument("--no-deploy", action="store_true", help="export as is, without folding BN into convs")
    p.set_defaults(func=cmd_export)


def _model_with_weights(name: str, checkpoint: str | None) -> torch.nn.Module:
    """``name`` with the weights in ``checkpoint`` (any weight file, cnnzoo.files.load_file: a cnnzoo run's
    classes and channels), or with random weights."""
    if checkpoint is None:
        print(f"cnnzoo: note: no --checkpoint given, exporting {name} with random weights", file=sys.stderr)
        return registry.create_model(name)
    return load_trained(checkpoint, name)[0]


def cmd_export(args: argparse.Namespace) -> None:
    from .deploy import deploy, export, require_onnx

    if args.format == "onnx":
        require_onnx()  # before any work
    size = input_size(args, args.name)
    model = _model_with_weights(args.name, args.checkpoint)
    if not args.no_deploy:
        model = deploy(model, size, channels_last=False)  # BN folded, dropout and aux heads gone
    suffix = {"onnx": ".onnx", "torchscript": ".pt"}[args.format]
    path = export(model, args.output or f"{args.name}{suffix}", args.format, size)
    print(f"{args.name} written to {path} ({args.format}, input N x {model.default_cfg.in_chans}"
          f" x {size} x {size})")


# ----------------------------------------------------------------- training: check-data, train, eval

def add_check_data(sub) -> None:
    p = sub.add_parser("check-data", help="check an ImageFolder tree file by file, without training "
                                          "(exit 0 clean, 2 problems found)")
    p.add_argument("path", help="PATH or folder:PATH holding train/ and val/ (or test/)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    p.set_defaults(func=cmd_check_data)


def cmd_check_data(args: argparse.Namespace) -> int:
    from .data import check_folder, parse_spec

    kind, path = parse_spec(args.path)
    if kind != "folder":
        raise UsageError(f"check-data checks ImageFolder trees; {args.path!r} is a built-in data set")
    report = check_folder(path, workers=args.workers)
    print("\n".join(report.lines()))
    return 2 if report.problems else 0  # bad data is the user's to fix: the exit status of every user error


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model with a recipe; ends with `top1=.. top5=.. run=DIR`",
                       description="Train; with no arguments ResNet-20 on the embedded digits (a few CPU minutes).")
    p.add_argument("--config", metavar="RECIPE", help="a packaged recipe by name (`cnnzoo recipes`), e.g."
                                                     " resnet_cifar10, or the path of a YAML file")
    p.add_argument("--model", help="registered model name (`cnnzoo list`)")
    p.add_argument("--data", metavar="SPEC", help="digits | cifar10[:PATH] | cifar100[:PATH] | folder:PATH | PATH")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch, split across DDP processes")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--out", metavar="DIR", help="parent folder of run folders (default runs)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--strict-data", action="store_true",
                   help="refuse to start if any image file is unreadable, listing them (default: skip and list)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="any config key, e.g. weight_decay=1e-4 milestones=[30,60] model_kwargs.aux_logits=true")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> None:
    keys = ("model", "data", "epochs", "batch_size", "lr", "out", "seed", "device")
    flags = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    if args.strict_data:
        flags["strict_data"] = True
    overrides = parse_assignments(args.overrides)
    if args.resume and args.config:
        raise UsageError("--resume continues a run with its own config.yaml; drop --config")
    if args.resume:
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


def add_recipes(sub) -> None:
    p = sub.add_parser("recipes", help="the papers' training recipes shipped with cnnzoo (`train --config NAME`)")
    p.set_defaults(func=cmd_recipes)


def cmd_recipes(args: argparse.Namespace) -> None:
    from .engine.config import recipes

    found = recipes()
    width = max(map(len, found))
    for name, about in found.items():
        print(f"{name:<{width}}  {about}")


def add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="a paper's experiment by name, with a report of the paper's figures and ours")
    p.add_argument("name", nargs="?", help="the experiment (`--list` shows them)")
    p.add_argument("--list", action="store_true", help="each experiment: claim, paper figure, cost of each scale")
    p.add_argument("--scale", choices=("smoke", "cpu", "paper"), default="smoke",
                   help="smoke: seconds, checks the pipeline; cpu: reduced, about an hour; paper: the full setting")
    p.add_argument("--data", help="data spec (cpu and paper scales: CIFAR-10, e.g. cifar10:DIR or folder:PATH)")
    p.add_argument("--out", help="report folder (default: reproductions/NAME for cpu, reproductions/NAME-SCALE else)")
    p.add_argument("--index", metavar="DIR", help="write DIR/README.md: one row per report folder in DIR")
    p.set_defaults(func=cmd_reproduce)


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


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="test top-1/top-5 of a run folder or weight file; ends with `top1=.. top5=..`")
    p.add_argument("--checkpoint", metavar="RUN_DIR_OR_FILE", type=existing_path,
                   help="a run folder (its last.ckpt), a .ckpt or a .safetensors file")
    p.add_argument("--pretrained", nargs="?", const=True, default=False, metavar="TAG",
                   help="the published weights of --model (default tag, or TAG) on --data DIR, a folder of class"
                        " folders (or DIR/val/); prints measured against published accuracy")
    p.add_argument("--data", metavar="SPEC", help="data spec (default: the one the model was trained on)")
    p.add_argument("--crops", choices=["center", "ten"], default="center", help="ten: AlexNet/GoogLeNet 10-crop")
    p.add_argument("--model", help="model name, for weight files that do not record it")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> None:
    if args.pretrained:
        return cmd_eval_pretrained(args)
    if not args.checkpoint:
        raise UsageError("give --checkpoint RUN_DIR_OR_FILE, or --pretrained --model NAME for published weights")
    scores = evaluate_checkpoint(args.checkpoint, args.data, crops=args.crops, batch_size=args.batch_size,
                                 device=args.device, model=args.model)
    print(f"top1={scores['top1']:.2f} top5={scores['top5']:.2f}")


def cmd_eval_pretrained(args: argparse.Namespace) -> None:
    """`eval --pretrained`: published weights on a folder, measured against their published accuracy."""
    from .engine.pretrained import evaluate_pretrained

    if args.checkpoint or not args.model or not args.data:
        raise UsageError("--pretrained evaluates published weights: give --model NAME and --data DIR,"
                         " without --checkpoint")
    if args.crops != "center":
        raise UsageError("--pretrained scores the weights' own single centre crop; drop --crops")
    scores = evaluate_pretrained(args.model, args.data, None if args.pretrained is True else args.pretrained,
                                 batch_size=args.batch_size, device=args.device)
    w = scores["weights"]
    print(f"{w['architecture']}.{w['tag']} on {args.data}: {scores['images']} images, {w['input_size'][-1]} crop"
          f" (crop_pct {w['crop_pct']}, {w['interpolation']}, mean {tuple(w['mean'])}, std {tuple(w['std'])})")
    print(f"  {'':<8}{'measured':>10}{'published':>11}")
    for key in ("top1", "top5"):
        published = "" if w[key] is None else f"{w[key]:.2f}"
        print(f"  {key:<8}{scores[key]:>10.2f}{published:>11}")
    print(f"top1={scores['top1']:.2f} top5={scores['top5']:.2f}")


# ----------------------------------------------------------------- the parser and the entry point

SUBCOMMANDS: list[Callable] = [add_list, add_info, add_compare, add_explain, add_bench, add_export, add_table,
                               add_check_data, add_recipes, add_train, add_eval, add_reproduce]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnzoo", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args, extra = build_parser().parse_known_args(argv)
    # argparse stops collecting KEY=VALUE positionals at the first option after them; gather the rest
    if extra and getattr(args, "overrides", None) is not None and all("=" in a and a[0] != "-" for a in extra):
        args.overrides += extra
    elif extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see `cnnzoo {args.command} --help`)")
    return args


def _quiet_stdout() -> None:
    """The reader of stdout went away (``| head``): point stdout at /dev/null, so that the flush at exit
    finds no closed pipe and Python prints no "Exception ignored" message."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


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
        args = parse_args(argv)
        status = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except (Exception, KeyboardInterrupt) as e:
        if isinstance(e, BrokenPipeError):
            _quiet_stdout()
        elif os.environ.get("CNNZOO_DEBUG"):
            raise
        status, line = exit_status(e)
        if line:
            print(" ".join(line.split("\n")), file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
