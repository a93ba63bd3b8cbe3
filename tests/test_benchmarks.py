"""benchmarks/gpu_report.py: its CPU quick mode (what CI runs) writes every section with finite ratios.

Only the shape of the report is checked, never a timing.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN_MODELS = ("resnet50", "xception", "inception_resnet_v2", "densenet121")


def run(code_or_script: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *code_or_script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def rows(section: str) -> dict[str, list[str]]:
    """A Markdown table's body rows by their first cell."""
    lines = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| model")
             and not line.startswith("| case")]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


@pytest.mark.heavy  # about 20 s of CPU: four model pairs, ResNet-110 and a deploy
def test_gpu_report_quick_on_cpu_has_every_section_and_finite_ratios(tmp_path):
    out = tmp_path / "report.md"
    done = run([str(ROOT / "benchmarks" / "gpu_report.py"), "--device", "cpu", "--quick", "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert text in done.stdout  # the same report goes to stdout
    head, train, sd, infer = text.split("\n## ")
    assert "--device cpu --quick" in head and f"torch {torch.__version__}" in head
    assert "- device: cpu" in head and "- date: " in head

    assert train.startswith("Training") and "bf16 autocast on" in train
    table = rows(train)
    assert sorted(table) == sorted(TRAIN_MODELS)
    for name, cells in table.items():
        ours, peer, ratio = (float(c) for c in cells[4:7])
        low, high = (float(c) for c in cells[7].split("-"))
        assert cells[8] == "", f"{name}: {cells[8]}"
        assert all(math.isfinite(v) and v > 0 for v in (ours, peer, ratio, low, high))
        assert low <= high
        assert abs(ratio - ours / peer) <= ratio * (0.05 / ours + 0.05 / peer) + 0.001  # img/s printed to 0.1

    assert sd.startswith("Stochastic depth")
    table = rows(sd)
    cells = table["resnet110 drop_path_rate=0.5 batch"]
    ratio, expected, from_costs = float(cells[2]), float(cells[4]), float(cells[5])
    assert math.isfinite(ratio) and ratio > 0
    assert abs(expected - 0.745) < 0.01  # E[L~]/L of ResNet-110 with the linear rule, p_L = 0.5 (54 blocks)
    assert 0 < from_costs < 1.5 and math.isfinite(from_costs)

    assert infer.startswith("Inference")
    table = rows(infer)
    assert list(table) == ["resnet50"] and table["resnet50"][8] == ""
    assert math.isfinite(float(table["resnet50"][6]))


def test_a_missing_peer_library_gives_a_row_that_says_so(tmp_path):
    code = ("import sys, dataclasses, torch; sys.modules['timm'] = None\n"  # None in sys.modules: import fails
            "import gpu_report as g\n"
            "s = dataclasses.replace(g.QUICK, train_models=('xception',))\n"
            "print('ROW', g.train_section(s, torch.device('cpu'), amp=True)[-1])\n")
    done = run(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("ROW "))
    assert row.startswith("ROW | xception | timm legacy_xception |")
    assert row.endswith("| n/a | n/a | n/a | n/a | peer library timm is not installed |")


def test_scaling_plot_draws_both_sides_of_every_family(tmp_path):
    """benchmarks/scaling.py's plot from made-up points (no timing): a curve per family and side in each panel."""
    code = ("import scaling\n"
            "pts = [dict(model=m, side_of=who, axis=axis, batch=b, img_size=s, step_s=0.01 * b * s / 32)\n"
            "       for m in scaling.FAMILIES for who in ('ours', 'peer')\n"
            "       for axis, b, s in [('batch', 1, 32), ('batch', 2, 32), ('side', 2, 32), ('side', 2, 64)]]\n"
            "import matplotlib.pyplot as plt\n"
            "saved = plt.Figure.savefig\n"
            "def check(fig, path, **kw):\n"
            "    print('LINES', [len(ax.lines) for ax in fig.axes])\n"
            "    saved(fig, path, **kw)\n"
            "plt.Figure.savefig = check\n"
            f"scaling.plot(pts, 'title', __import__('pathlib').Path({str(tmp_path / 's.png')!r}))\n")
    done = run(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # top row: 3 families x 2 sides + the proportional guide; bottom row: 3 x 2
    assert "LINES [7, 7, 6, 6]" in done.stdout
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_forced_gates_run_exactly_the_named_blocks_and_restore_them():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import stochastic_depth
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import cnnzoo

    model = cnnzoo.create_model("resnet20", drop_path_rate=0.5).train()
    probs = {name: g.survival_prob for name, g in stochastic_depth.gates_of(model).items()}
    ran = []
    for name, block in model.named_modules():
        if hasattr(block, "residual"):
            block.conv1.register_forward_hook(lambda *_, name=name: ran.append(name))
    with stochastic_depth.forced(model, {"layer1.0", "layer2.2"}):
        for _ in range(3):
            model(torch.randn(2, 3, 32, 32))
    assert ran == ["layer1.0", "layer2.2"] * 3
    assert {name: g.survival_prob for name, g in stochastic_depth.gates_of(model).items()} == probs
