"""Mutation testing, one module at a time: ``python tools/mutation.py MODULE [--budget SECONDS]``.

MODULE is a path under src/cnnzoo (``layers/lrn.py``) or ``all``. Each module is mutated by mutmut
with only the tests that cover it (``TESTS`` below), in its own work folder ``.mutation/<module>/``,
so a run can stop at any time (``--budget``, Ctrl-C) and the next call resumes where it stopped:
mutants with a result keep it until their module's source changes (delete the folder, or --fresh, to start
over); survivors are tested again on every call, so a test added to kill one is seen.
At the end it prints the module's score: killed / (all - equivalent), equivalents being the mutants
listed in TESTING.md's table as equivalent.

    python tools/mutation.py layers/lrn.py             # run (or resume), then report
    python tools/mutation.py layers/lrn.py --report    # report only
    python tools/mutation.py layers/lrn.py --show      # print the diff of every surviving mutant
    python tools/mutation.py data/transforms.py --constants   # the module-level numbers, which mutmut skips
    python tools/mutation.py data/transforms.py --survivors   # only the survivors, against today's tests

The shared mutmut settings are [tool.mutmut] in pyproject.toml; this script adds the module and its tests.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"

# The generic per-model tests, for the models a family file registers (``generic_tests``): the reference
# parameter and MAC counts on the meta device (the first test to fail for most wrong channel counts, kernel
# sizes or strides; mutmut runs a mutant's fastest tests first), a forward/backward/head check, and timm's
# interface (config, classifier reset, feature_info against the real feature maps).
SHAPES = "tests/test_models.py::test_params_and_macs_equal_reference"
GENERIC = ("tests/test_models.py::test_params_and_macs_equal_reference",
           "tests/test_models.py::test_forward_backward_and_head",
           "tests/test_timm_interface.py::test_cfg_reads_as_a_dict_and_names_real_modules",
           "tests/test_timm_interface.py::test_classifier_and_pool_reset",
           "tests/test_timm_interface.py::test_forward_intermediates_follow_feature_info")

# The modules that carry paper details, and the test files that check them.
TESTS: dict[str, list[str]] = {
    "layers/lrn.py": ["tests/test_paper_constants.py", "tests/test_alexnet.py"],
    "layers/drop.py": ["tests/test_paper_constants.py", "tests/test_stochastic_depth.py"],
    "layers/conv.py": ["tests/test_paper_constants.py", "tests/test_models.py"],
    "layers/separable.py": [SHAPES, "tests/test_xception.py", "tests/test_mobilenet.py"],
    "layers/concat.py": [SHAPES, "tests/test_inception_v4.py", "tests/test_inception_resnet.py"],
    "layers/pool.py": ["tests/test_timm_interface.py"],
    "layers/fx.py": ["tests/test_timm_interface.py", "tests/test_alexnet.py", "tests/test_lenet.py"],
    "engine/optim.py": ["tests/test_paper_constants.py", "tests/test_engine_optim.py"],
    "data/transforms.py": ["tests/test_paper_constants.py", "tests/test_pipeline_statistics.py",
                           "tests/test_data_transforms.py"],
    "weights.py": ["tests/test_weights_strict.py", "tests/test_pretrained.py"],
    "analysis/complexity.py": ["tests/test_analysis_complexity.py", "tests/test_analysis_compare.py"],
    "models/alexnet.py": ["tests/test_alexnet.py", "tests/test_paper_constants.py"],
    "models/vgg.py": ["tests/test_vgg.py"],
    "models/googlenet.py": ["tests/test_googlenet.py", "tests/test_paper_constants.py"],
    "models/resnet.py": ["tests/test_resnet.py", "tests/test_stochastic_depth.py", "tests/test_resnext.py",
                         "tests/test_norm_layer.py"],
    "models/densenet.py": ["tests/test_densenet.py", "tests/test_paper_constants.py"],
    "models/xception.py": ["tests/test_xception.py", "tests/test_norm_layer.py"],
    "models/inception_resnet.py": ["tests/test_inception_resnet.py", "tests/test_paper_constants.py",
                                   "tests/test_norm_layer.py"],
    "models/polynet.py": ["tests/test_polynet.py", "tests/test_norm_layer.py"],
    "models/lenet.py": ["tests/test_lenet.py"],
    "models/inception_v3.py": ["tests/test_inception_v3.py"],
    "models/inception_v4.py": ["tests/test_inception_v4.py"],
    "models/resnext.py": ["tests/test_resnext.py"],
    "models/squeezenet.py": ["tests/test_squeezenet.py"],
    "models/mobilenet.py": ["tests/test_mobilenet.py"],
    "models/efficientnet.py": ["tests/test_efficientnet.py"],
    "models/shufflenet.py": ["tests/test_shufflenet.py"],
    "models/pyramidnet.py": ["tests/test_pyramidnet.py"],
    "models/base.py": ["tests/test_timm_interface.py"],  # the timm interface every family inherits
}
# Modules that every model runs alike (a base class, the MAC counter): their tests that run over every
# registered model run here on one model of each family (``samples``; tests/conftest.py deselects the rest).
SAMPLED = {"models/base.py", "analysis/complexity.py", "layers/pool.py", "layers/fx.py"}


def generic_tests(module: str) -> list[str]:
    """The GENERIC tests of the models registered in ``models/NAME.py`` (test ids with parameters)."""
    import cnnzoo

    names = cnnzoo.list_models(module=module.removeprefix("models/").removesuffix(".py"))
    return [f"{test}[{name}]" for test in GENERIC for name in names]


def samples() -> str:
    """One model of each family file (the first of its names in order), comma-separated."""
    import cnnzoo
    from cnnzoo import registry

    return ",".join(sorted(cnnzoo.list_models(module=family)[0] for family in set(registry._MODULES.values())))


def selection(module: str) -> list[str]:
    """The tests to run for ``module``: a family file's GENERIC tests of its own models, then its ``TESTS`` entry."""
    return (generic_tests(module) if module.startswith("models/") else []) + TESTS[module]


def work_dir(module: str) -> Path:
    return WORK / module.removesuffix(".py").replace("/", "-")


def prepare(module: str) -> Path:
    """The work folder: links to src/ and tests/, and a pyproject.toml naming this module and its tests."""
    work = work_dir(module)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("src", "tests"):
        link = work / name
        if not link.exists() and (ROOT / name).exists():
            link.symlink_to(ROOT / name)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shared = project["tool"]["mutmut"]
    pytest_cfg = project["tool"]["pytest"]["ini_options"]
    lines = ["[tool.pytest.ini_options]"]
    lines += [f"{k} = {_toml(v)}" for k, v in pytest_cfg.items() if k != "testpaths"]
    lines += ["", "[tool.mutmut]", f"only_mutate = {_toml(['src/cnnzoo/' + module])}",
              f"pytest_add_cli_args_test_selection = {_toml(selection(module))}"]
    lines += [f"{k} = {_toml(v)}" for k, v in shared.items() if k not in ("only_mutate",
                                                                            "pytest_add_cli_args_test_selection")]
    text = "\n".join(lines) + "\n"
    config = work / "pyproject.toml"
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    return work


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def mutmut(work: Path, *args: str, budget: float | None = None, models: str | None = None) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CNNZOO_OFFLINE="1")
    if models:  # all-model tests on these models only (tests/conftest.py): an environment variable, since
        env["CNNZOO_MUTATION_MODELS"] = models  # any change of mutmut's test selection resets every verdict
    env.pop("CI", None)  # mutants run without ../shared/data beside them: those tests skip there
    env.pop("PYTHONPATH", None)  # mutmut puts the mutated copy of src/ first on the path itself
    command = [sys.executable, "-m", "mutmut", *args]
    proc = subprocess.Popen(command, cwd=work, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=budget)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        os.killpg(proc.pid, signal.SIGINT)  # mutmut saves each result as it comes: the next run resumes
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        print(f"stopped after {budget} s; run again to resume")
        return 0


def equivalents(module: str) -> set[str]:
    """Mutant names TESTING.md lists as equivalent (a table row: | `name` | equivalent | reason |)."""
    text = (ROOT / "TESTING.md").read_text() if (ROOT / "TESTING.md").exists() else ""
    stem = "cnnzoo." + module.removesuffix(".py").replace("/", ".")
    return {m for m in re.findall(r"^\| `([^`]+)` \| equivalent", text, re.M) if m.startswith(stem + ".")}


def results(work: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work,
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH="")).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().partition(": ")
        if sep:
            found[name] = status
    return found


def report(module: str, show: bool = False) -> None:
    work = work_dir(module)
    found = results(work)
    if not found:
        print(f"{module}: no results yet")
        return
    equivalent = equivalents(module) & set(found)
    counted = {k: v for k, v in found.items() if k not in equivalent}
    killed = sum(v in ("killed", "timeout") for v in counted.values())
    pending = sum(v == "not checked" for v in counted.values())
    left = sorted(k for k, v in counted.items() if v not in ("killed", "timeout", "not checked"))
    score = killed / max(1, len(counted) - pending)
    print(f"{module}: {killed} killed of {len(counted) - pending} run ({score:.0%}), {len(equivalent)} equivalent, "
          f"{pending} not yet run")
    for name in left:
        print(f"  {counted[name]}: {name}")
        if show:
            subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work)


def constant_sites(source: str) -> list[ast.Constant]:
    """Numbers in the module's top-level assignments (mutmut mutates function bodies and defaults only)."""
    sites = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            sites += [c for c in ast.walk(node.value) if isinstance(c, ast.Constant)
                      and type(c.value) in (int, float)]
    return sites


def mutate_constants(module: str, budget: float) -> None:
    """Change each module-level number alone (an int by +1, a float by x1.1) in a copy of src/ and run the
    module's tests on it; print killed / survived per constant, and save the list beside mutmut's results."""
    source = (ROOT / "src" / "cnnzoo" / module).read_text()
    lines = source.splitlines(keepends=True)
    start, report_lines = time.monotonic(), []
    env = dict(os.environ, OMP_NUM_THREADS="1", CNNZOO_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "src", Path(tmp) / "src")
        target = Path(tmp) / "src" / "cnnzoo" / module
        env["PYTHONPATH"] = str(Path(tmp) / "src")
        for site in constant_sites(source):
            if time.monotonic() - start > budget:
                report_lines.append(f"not run (budget): line {site.lineno}")
                continue
            new = site.value + 1 if isinstance(site.value, int) else site.value * 1.1
            line = lines[site.lineno - 1]
            mutated = line[:site.col_offset] + repr(new) + line[site.end_col_offset:]
            target.write_text("".join(lines[:site.lineno - 1] + [mutated] + lines[site.lineno:]))
            run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                  *selection(module)], cwd=ROOT, env=env, capture_output=True)
            verdict = "killed" if run.returncode else "SURVIVED"
            report_lines.append(f"{verdict}: line {site.lineno}: {line.strip()}  ->  {mutated.strip()}")
            print(report_lines[-1], flush=True)
        target.write_text(source)
    out = work_dir(module) / "constants.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(report_lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help=f"a module under src/cnnzoo or 'all': {', '.join(TESTS)}")
    parser.add_argument("--budget", type=float, default=1800, help="stop (resumable) after this many seconds")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested in parallel (default 1)")
    parser.add_argument("--report", action="store_true", help="only print the score and the survivors")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff (with --report)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results of the module")
    parser.add_argument("--constants", action="store_true", help="mutate the module-level numbers instead")
    parser.add_argument("--survivors", action="store_true", help="only test the survivors again (after new tests)")
    args = parser.parse_args()
    modules = list(TESTS) if args.module == "all" else [args.module]
    unknown = [m for m in modules if m not in TESTS]
    if unknown:
        parser.exit(2, f"mutation.py: error: unknown module {unknown[0]!r}; choose from {', '.join(TESTS)}\n")
    start = time.monotonic()
    if args.constants:
        for module in modules:
            mutate_constants(module, args.budget - (time.monotonic() - start))
        return
    for module in modules:
        if args.fresh:
            shutil.rmtree(work_dir(module), ignore_errors=True)
        if not args.report:
            left = args.budget - (time.monotonic() - start)
            if left <= 0:
                break
            work, models = prepare(module), samples() if module in SAMPLED else None
            # mutmut keeps a survivor's verdict: those of an earlier call get a chance against today's tests below
            earlier = {k for k, v in results(work).items() if v == "survived"}
            if not args.survivors:
                mutmut(work, "run", "--max-children", str(args.jobs), budget=left, models=models)
            # ... except those TESTING.md lists as equivalent: no test can kill them, and each costs all its tests
            survivors = [k for k, v in results(work).items()
                         if v == "survived" and k in earlier and k not in equivalents(module)]
            left = args.budget - (time.monotonic() - start)
            if survivors and left > 0:
                # mutmut maps new tests to the functions they run, but not tests edited since: map all again
                (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
                mutmut(work, "run", "--max-children", str(args.jobs), *survivors, budget=left, models=models)
        report(module, show=args.show)


if __name__ == "__main__":
    main()
