"""The report folder of a reproduction: report.md, figures and results.json, written from measured runs."""

from __future__ import annotations

import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from .. import registry
from ..analysis import count_macs, count_params
from ..analysis.complexity import meta_model
from ..engine.checkpoint import atomic_write
from .experiments import Experiment, Scale

# The overview's networks, in the order the field built them (those registered are shown); the ResNets in
# the paper's layout, the one its errors were measured on.
OVERVIEW_MODELS = ("alexnet", "vgg16", "vgg19", "googlenet", "inception_v3", "resnet50_paper", "resnet101_paper",
                   "resnet152_paper", "squeezenet1_0", "xception", "inception_v4", "inception_resnet_v2",
                   "densenet121", "densenet169", "densenet201", "densenet264", "resnext50_32x4d", "polynet",
                   "mobilenet_v1_100", "shufflenet_v1_g3", "efficientnet_b0")
YEAR = {"alexnet": 2012}  # papers without an arXiv id; the others' year is their id's first two digits


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(values: list[float], unit: str = "") -> str:
    text = f"{_mean(values):.2f}{unit}"
    return text + (f" ± {_sd(values):.2f}" if len(values) > 1 else "")


def verdict(exp: Experiment, scale: str, results: dict[str, list[dict[str, Any]]], arm: str,
            test_images: int | None = None) -> tuple[str, str]:
    """(verdict, why) for the claim that ``arm`` ends with a lower test error than the baseline.

    The noise a gain must beat is the larger of the seeds' spread and, when the test set has ``test_images``
    images, the sampling error of the difference of two error rates measured on it (binomial; over the seeds'
    mean), so that one seed on a small test set cannot claim a difference of a point or two.
    """
    if scale == "smoke":
        return "pipeline check", "the smoke scale trains for seconds: it checks the pipeline, not the claim"
    ours = [r["test_error"] for r in results[arm]]
    base = [r["test_error"] for r in results[exp.baseline]]
    gain = _mean(base) - _mean(ours)
    noise = max(_sd(ours), _sd(base), 0.1)
    if test_images:
        sampling = math.sqrt(sum(e * (100 - e) / (test_images * len(runs)) for e, runs in
                                 ((_mean(ours), ours), (_mean(base), base))))
        noise = max(noise, sampling)
    if gain > noise:
        return "reproduced", f"{gain:.2f} points lower than {exp.baseline} (noise {noise:.2f})"
    if gain < -2 * noise:
        if len(ours) > 1:
            return "contradicted", f"{-gain:.2f} points higher than {exp.baseline} over {len(ours)} seeds"
        return "not at this scale", f"{-gain:.2f} points higher than {exp.baseline} (one seed of a reduced run)"
    return "not at this scale", f"{gain:+.2f} points against {exp.baseline}, within the noise of a reduced run"


def ranking(results: dict[str, list[dict[str, Any]]], which: str) -> str:
    """The arms from lowest to highest mean test error, at the ``last`` or ``first`` evaluation."""
    pick = (lambda r: r["test_errors"][-1]) if which == "last" else (lambda r: r["test_errors"][0])
    means = sorted((_mean([pick(r) for r in runs]), arm) for arm, runs in results.items())
    return " < ".join(f"{arm} ({err:.2f}%)" for err, arm in means)


def _save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_curves(results: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    """Test error against epoch, every arm on one plot (one line per seed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, (arm, runs) in enumerate(results.items()):
        for j, r in enumerate(runs):
            ax.plot(r["epochs"], r["test_errors"], color=f"C{i}", marker="o", markersize=3,
                    label=arm if j == 0 else None, alpha=1.0 if j == 0 else 0.5)
    ax.set(xlabel="epoch", ylabel="test error %", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)


def plot_bars(exp: Experiment, results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Paper vs measured test error per arm (the paper's bar only where it gives a figure)."""
    from matplotlib.figure import Figure

    arms = list(results)
    fig = Figure(figsize=(max(6, 1.3 * len(arms)), 4.5))
    ax = fig.subplots()
    xs = range(len(arms))
    ours = [_mean([r["test_error"] for r in results[a]]) for a in arms]
    errs = [_sd([r["test_error"] for r in results[a]]) for a in arms]
    ax.bar([x + 0.2 for x in xs], ours, width=0.4, yerr=errs, label="ours (measured)", color="C1")
    paper = [(x, exp.paper_error[a]) for x, a in zip(xs, arms) if a in exp.paper_error]
    if paper:
        ax.bar([x - 0.2 for x, _ in paper], [v for _, v in paper], width=0.4, label="paper", color="C0")
    ax.set_xticks(list(xs), arms, rotation=20, ha="right")
    ax.set(ylabel="test error %", title=f"{exp.name}: paper vs measured")
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)


def _stochastic_depth_extras(exp: Experiment, scale: str, sc: Scale, results: dict[str, list[dict[str, Any]]],
                             out: Path) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Training-time ratio, expected depth and the gradient-flow figure (the stochastic-depth paper's measures)."""
    from ..engine.gradflow import plot_grad_flow, read_grad_flow
    from ..layers import StochasticDepth

    const, sd = (results[a] for a in exp.arms)
    # each arm's fastest epoch: the one least slowed by other work sharing the machine (as timeit takes the
    # minimum); the gates' epoch-to-epoch variation is about 1 % of an epoch's compute
    ratio = min(t for r in sd for t in r["epoch_seconds"]) / min(t for r in const for t in r["epoch_seconds"])
    total = _mean([r["train_seconds"] for r in sd]) / _mean([r["train_seconds"] for r in const])
    spread = "; ".join(f"{arm} min {min(t):.1f} / median {statistics.median(t):.1f} / max {max(t):.1f}"
                       for arm, t in ((arm, [t for r in results[arm] for t in r["epoch_seconds"]]) for arm in exp.arms))
    model = meta_model(sc.overrides["model"], drop_path_rate=0.5)
    probs = [m.survival_prob for m in model.modules() if isinstance(m, StochasticDepth)]
    time_verdict = "pipeline check" if scale == "smoke" else "reproduced" if ratio < 0.9 else "not at this scale"
    lines = [f"- Training time, stochastic / constant depth: **{ratio:.3f}** per epoch (fastest epoch of each; whole "
             f"runs {total:.3f}, which other work on the machine can skew) (paper: 60 s / 75 s = 0.80 per epoch; "
             f"{time_verdict}). Epoch seconds: {spread}.",
             f"- Expected depth E[L~] = {sum(probs):.2f} of {len(probs)} residual blocks "
             f"({sum(probs) / len(probs):.1%}; the paper: about 3L/4)."]
    csvs = [(arm, r["grad_flow"]) for arm in exp.arms for r in results[arm][:1] if r["grad_flow"]]
    verdicts = {"training time": (time_verdict, f"stochastic / constant depth = {ratio:.3f} (paper 0.80)")}
    if len(csvs) == 2:
        plot_grad_flow([c for _, c in csvs], out / "grad_flow.png", labels=[a for a, _ in csvs])
        # the paper's Figure 7: the first block's mean |gradient|, averaged over the epochs
        c, s = ([row[0] for row in read_grad_flow(path)[2]] for _, path in csvs)
        grad = _mean(s) / _mean(c)
        grad_verdict = "pipeline check" if scale == "smoke" else "reproduced" if grad > 1.05 else "not at this scale"
        lines.append(f"- Gradient magnitude of the first residual block, stochastic / constant depth, mean over the "
                     f"epochs: **{grad:.3f}** (the paper: larger with stochastic depth, Figure 7; {grad_verdict}); "
                     "every block per epoch: `grad_flow.png`.")
        verdicts["early gradients"] = (grad_verdict, f"first block's mean |gradient| ratio {grad:.3f} (paper > 1)")
    return lines, verdicts


def write_report(out: Path, exp: Experiment, scale: str, sc: Scale, results: dict[str, list[dict[str, Any]]],
                 command: str, machine: str, seconds: float) -> None:
    plot_curves(results, out / "curves.png", f"{exp.name} ({scale} scale)")
    plot_bars(exp, results, out / "bars.png")
    verdicts = {arm: verdict(exp, scale, results, arm, sc.test_images) for arm in exp.expect_lower if arm in results}
    extras: list[str] = []
    if exp.name == "stochastic-depth":
        extras, more = _stochastic_depth_extras(exp, scale, sc, results, out)
        verdicts.update(more)
    rows = ["| arm | paper test error % | ours, last epoch % | ours, best % | training s | verdict |",
            "|---|--:|--:|--:|--:|---|"]
    for arm, runs in results.items():
        v = verdicts.get(arm, ("baseline" if arm == exp.baseline else "", ""))[0]
        paper = f"{exp.paper_error[arm]:.2f}" if arm in exp.paper_error else "-"
        rows.append(f"| {arm} | {paper} | {_fmt([r['test_error'] for r in runs])} | "
                    f"{_fmt([r['best_test_error'] for r in runs])} | {_fmt([r['train_seconds'] for r in runs])} | "
                    f"{v} |")
    seeds = ", ".join(str(s) for s in sc.seeds)
    text = "\n".join([
        f"# {exp.name}", "",
        f"**Paper.** {exp.paper}.", "",
        f"**Claim.** {exp.claim}", "",
        f"**Where.** {exp.figure}.", "",
        f"## Paper vs ours ({scale} scale)", "",
        *rows, "",
        *(f"- {arm}: **{v}**: {why}." for arm, (v, why) in verdicts.items() if arm in results),
        *extras,
        *([f"- Ranking, lowest test error first, at the end: {ranking(results, 'last')}; at the first evaluation: "
           f"{ranking(results, 'first')}. The paper: {exp.paper_order}."] if exp.paper_order else []), "",
        "![test error per epoch](curves.png)", "", "![paper vs measured](bars.png)", "",
        *(["![gradient flow](grad_flow.png)", ""] if (out / "grad_flow.png").is_file() else []),
        "## How this was run", "",
        f"- Scale: `{scale}`. Reduced: {sc.reduced}.",
        f"- Command: `{command}`",
        f"- Seeds: {seeds}; config per arm: {', '.join(f'`{k}={v}`' for k, v in sc.overrides.items())}.",
        f"- Machine: {machine}. Training time of all runs: "
        f"{sum(r['train_seconds'] for runs in results.values() for r in runs) / 60:.1f} min; wall time of this "
        f"invocation: {seconds / 60:.1f} min (runs finished earlier are read, not retrained).",
        "- Training seconds are wall-clock time of the training epochs, as the machine was: other work sharing it "
        "(or a run paused and resumed) lengthens them.",
        "- Per-run metrics: `metrics-ARM-seedS.csv`; everything above as data: `results.json`.", ""])
    atomic_write(out / "report.md", lambda f: f.write(text.encode()))
    summary = {"experiment": exp.name, "scale": scale, "command": command, "machine": machine,
               "paper_error": exp.paper_error, "arms": results,
               "verdicts": {a: {"verdict": v, "why": why} for a, (v, why) in verdicts.items()}}
    atomic_write(out / "results.json", lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode()))


def overview_rows() -> list[dict[str, Any]]:
    """Every registered overview network: params and MACs counted here, the paper's errors as registered."""
    rows = []
    for name in (n for n in OVERVIEW_MODELS if n in registry.list_models()):
        model = meta_model(name)
        cfg = registry.model_cfg(name)
        year = YEAR.get(name) or (2000 + int(cfg.arxiv[:2]) if cfg.arxiv else None)
        rows.append({"model": name, "year": year, "paper": cfg.paper, "params": count_params(model),
                     "gmacs": count_macs(model) / 1e9, "input": cfg.img_size, "top1_err": cfg.top1_err,
                     "top5_err": cfg.top5_err, "eval": cfg.eval_note})
    return sorted(rows, key=lambda r: (r["year"] or 0, r["gmacs"]))


def _parameter_ratio(rows: list[dict[str, Any]]) -> list[str]:
    """The claim's own figure, counted: how many times fewer parameters GoogLeNet has than AlexNet."""
    params = {r["model"]: r["params"] for r in rows}
    if "alexnet" not in params or "googlenet" not in params:
        return []
    ratio = params["alexnet"] / params["googlenet"]
    return [f"AlexNet / GoogLeNet parameters, counted: {params['alexnet']:,} / {params['googlenet']:,} = "
            f"**{ratio:.1f}x** (the GoogLeNet paper says 12x; its own table sums to about 6.8 M against "
            "AlexNet's 60 M, 8.8x).", ""]


def overview_report(out: Path, command: str) -> None:
    from matplotlib.figure import Figure

    rows = overview_rows()
    fig = Figure(figsize=(12, 5))
    for ax, key, title in zip(fig.subplots(1, 2), ("top1_err", "top5_err"), ("top-1", "top-5")):
        points = [r for r in rows if r[key] is not None]
        dots = ax.scatter([r["gmacs"] for r in points], [r[key] for r in points],
                          s=[max(12.0, r["params"] / 4e5) for r in points], c=[r["year"] for r in points],
                          cmap="viridis", alpha=0.7, edgecolors="k")
        for r in points:
            ax.annotate(r["model"], (r["gmacs"], r[key]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xscale="log", xlabel="GMACs per image (counted by cnnzoo)", ylabel=f"published {title} error %",
               title=f"ImageNet {title} error (marker area: parameters)")
        ax.grid(alpha=0.3)
    fig.colorbar(dots, label="year")
    fig.tight_layout()
    _save_figure(fig, out / "overview.png")
    table = ["| year | model | params | GMACs | input | top-1 err % | top-5 err % | as measured by the paper |",
             "|--:|---|--:|--:|--:|--:|--:|---|"]
    table += [f"| {r['year'] or ''} | `{r['model']}` | {r['params']:,} | {r['gmacs']:.3f} | {r['input']} | "
              f"{'' if r['top1_err'] is None else r['top1_err']} | {'' if r['top5_err'] is None else r['top5_err']}"
              f" | {r['eval']} |" for r in rows]
    text = "\n".join(["# cnn-overview", "",
                      "**Claim.** Each design of the era lowered the error, the better ones with fewer parameters or "
                      "fewer operations: GoogLeNet has about 12x fewer parameters than AlexNet at a far lower error.",
                      "", "Parameters and MACs are counted from cnnzoo's modules (one traced pass on the meta device); "
                      "the errors are the papers' published figures, as each paper measured them.", "",
                      *table, "", *_parameter_ratio(rows), "![error against compute](overview.png)", "",
                      f"Command: `{command or 'cnnzoo reproduce cnn-overview'}`", ""])
    atomic_write(out / "report.md", lambda f: f.write(text.encode()))
    atomic_write(out / "results.json", lambda f: f.write((json.dumps(rows, indent=2) + "\n").encode()))


def write_index(root: Path) -> Path:
    """``ROOT/README.md``: one row per report folder under ``root``: claim, paper, ours, verdict."""
    from .experiments import EXPERIMENTS

    rows = ["| experiment | scale | claim | paper | ours | verdict |", "|---|---|---|---|---|---|"]
    for path in sorted(root.glob("*/results.json")):
        results = json.loads(path.read_text())
        if isinstance(results, list):  # the overview: a table, nothing trained
            rows.append(f"| [{path.parent.name}]({path.parent.name}/report.md) | - | "
                        f"{EXPERIMENTS['cnn-overview'].claim} | published errors | {len(results)} networks counted "
                        f"| table and plot |")
            continue
        exp = EXPERIMENTS[results["experiment"]]
        paper = "; ".join(f"{arm} {err}%" for arm, err in results["paper_error"].items()) or exp.figure
        ours = "; ".join(f"{arm} {_mean([r['test_error'] for r in runs]):.2f}%"
                         for arm, runs in results["arms"].items())
        verdicts = "; ".join(f"{arm}: {v['verdict']}" for arm, v in results["verdicts"].items())
        rows.append(f"| [{exp.name}]({path.parent.name}/report.md) | {results['scale']} | {exp.claim} | {paper} | "
                    f"{ours} | {verdicts} |")
    text = "\n".join(["# Reproductions", "",
                      "Each folder is one `cnnzoo reproduce NAME` run: `report.md` (the claim, the paper's figures "
                      "and ours, what the scale reduces, the command), the figures, per-run `metrics-*.csv` and "
                      "`results.json`. Test errors are measured; \"paper\" quotes the paper. Regenerate this table "
                      "with `cnnzoo reproduce --index reproductions`.", "", *rows, ""])
    atomic_write(root / "README.md", lambda f: f.write(text.encode()))
    return root / "README.md"
