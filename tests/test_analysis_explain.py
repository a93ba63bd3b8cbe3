"""`cnnzoo explain`: each comparison's numbers equal their hand derivations."""

import pytest

from cnnzoo.analysis.explain import TOPICS, explain, format_explanation
from cnnzoo.cli import main


def by_design(topic, **options):
    return {row["design"]: row for row in explain(topic, **options).rows}


def test_two_3x3_against_one_5x5():
    c, hw = 256, 56 * 56
    rows = by_design("3x3", channels=c, size=56)
    assert rows["two 3x3"]["params"] == 18 * c * c and rows["one 5x5"]["params"] == 25 * c * c
    assert rows["three 3x3"]["params"] == 27 * c * c and rows["one 7x7"]["params"] == 49 * c * c
    assert all(r["macs"] == r["params"] * hw for r in rows.values())
    assert [r["field"] for r in rows.values()] == [5, 5, 7, 7]


def test_inception_3a_with_and_without_reductions():
    rows = by_design("inception")
    red, naive = rows["with 1x1 reductions"], rows["naive (no 1x1 reductions)"]
    weights = 192 * 64 + 192 * 96 + 96 * 128 * 9 + 192 * 16 + 16 * 32 * 25 + 192 * 32  # 163,328
    assert red["params"] == weights + (64 + 96 + 128 + 16 + 32 + 32) == 163_696
    assert red["macs"] == weights * 28 * 28 == 128_049_152
    naive_weights = 192 * 64 + 192 * 128 * 9 + 192 * 32 * 25
    assert naive["params"] == naive_weights + 64 + 128 + 32 and naive["macs"] == naive_weights * 784
    assert (red["out_chs"], naive["out_chs"]) == (256, 64 + 128 + 32 + 192)


def test_depthwise_separable_against_full():
    rows = by_design("separable")
    assert rows["full 3x3 conv"]["params"] == 728 * 728 * 9 == 4_769_856
    assert rows["depthwise 3x3"]["params"] == 728 * 9
    assert rows["depthwise separable (both)"]["params"] == 728 * 9 + 728 * 728 == 536_536
    assert rows["depthwise separable (both)"]["macs"] == 536_536 * 19 * 19


def test_densenet_block_growth():
    e = explain("densenet")
    assert [r["in_chs"] for r in e.rows] == [64, 96, 128, 160, 192, 224]
    first = e.rows[0]
    assert first["params"] == 2 * 64 + 64 * 128 + 2 * 128 + 128 * 32 * 9 == 45_440
    assert first["macs"] == 56 * 56 * (64 * 128 + 128 * 32 * 9) == 141_295_616
    assert e.rows[-1]["out_chs"] == 64 + 6 * 32 and "256 = 64 + 6 x 32" in e.summary[0]


def test_poly2_against_2way_at_equal_cost():
    rows = by_design("poly")
    # PolyNet's stage-A F: Block35's convs at 384 channels (136,704 weights), a BN (gamma, beta) after each
    weights = 384 * 32 + (384 * 32 + 32 * 32 * 9) + (384 * 32 + 32 * 48 * 9 + 48 * 64 * 9) + 128 * 384
    f = weights + 2 * (32 + 32 + 32 + 32 + 48 + 64 + 384)
    assert (weights, f) == (136_704, 137_952)
    poly, way = rows["poly-2  I + F + F^2"], rows["2-way   I + F + G"]
    assert (poly["params"], way["params"]) == (f, 2 * f)
    assert poly["macs"] == way["macs"] == 2 * weights * 35 * 35
    assert rows["poly-3  I + F + F^2 + F^3"]["params"] == f
    assert rows["mpoly-3 I + F + GF + HGF"]["macs"] == 3 * weights * 35 * 35


def test_unknown_topic():
    with pytest.raises(ValueError, match="unknown topic 'pool'; choose one of 3x3"):
        explain("pool")


def test_cli_lists_topics_and_explains(capsys):
    assert main(["explain"]) == 0
    out = capsys.readouterr().out
    assert all(topic in out for topic in TOPICS)
    assert main(["explain", "3x3", "--channels", "64", "--size", "8"]) == 0
    assert "72% of its parameters" in capsys.readouterr().out
    assert format_explanation(explain("separable"), "csv").splitlines()[0] == "design,params,macs"


def test_mobilenet_standard_against_depthwise_separable():
    m = n = 512
    rows = by_design("mobilenet")
    standard, separable = rows["standard 3x3 conv"], rows["depthwise separable (both)"]
    assert standard["params"] == 3 * 3 * m * n + 2 * n == 2_360_320  # conv + BN (gamma, beta)
    assert separable["params"] == 3 * 3 * m + 2 * m + m * n + 2 * n == 268_800
    assert standard["macs"] == 3 * 3 * m * n * 14 * 14
    assert separable["macs"] == (3 * 3 * m + m * n) * 14 * 14
    assert separable["macs"] / standard["macs"] == pytest.approx(1 / n + 1 / 9)  # Eq. 5
    assert "1/N + 1/9 = 0.113" in explain("mobilenet").summary[0]
    small = by_design("mobilenet", channels=32, size=7)
    assert small["depthwise separable (both)"]["macs"] / small["standard 3x3 conv"]["macs"] == pytest.approx(
        1 / 32 + 1 / 9)


def test_shufflenet_with_and_without_shuffle():
    rows = by_design("shufflenet")
    with_, without = rows["with channel shuffle"], rows["without channel shuffle"]
    weights = 240 * 60 // 3 + 60 * 9 + 60 * 240 // 3  # 1x1 GConv, 3x3 DWConv, 1x1 GConv
    assert with_["params"] == without["params"] == weights + 2 * (60 + 60 + 240) == 10_860
    assert with_["macs"] == without["macs"] == weights * 28 * 28 == 7_949_760
    assert (with_["responding"], without["responding"]) == (3, 1)  # Fig. 1: every group against its own


def test_squeezenet_fire_against_3x3():
    rows = by_design("squeezenet")
    conv = rows["3x3 conv, 512 filters"]
    expand = rows["expand only: 256 1x1 + 256 3x3 (strategy 1)"]
    fire = rows["fire: squeeze 64, then expand (strategies 1+2)"]
    assert conv["params"] == 384 * 512 * 9 + 512 == 1_769_984
    assert expand["params"] == 384 * 256 + 256 + 384 * 256 * 9 + 256 == 983_552
    assert fire["params"] == 384 * 64 + 64 + 64 * 256 + 256 + 64 * 256 * 9 + 256 == 188_992  # no BN in SqueezeNet
    assert fire["macs"] == (384 * 64 + 64 * 256 + 64 * 256 * 9) * 27 * 27
    assert conv["macs"] == 384 * 512 * 9 * 27 * 27
    assert conv["out_chs"] == expand["out_chs"] == fire["out_chs"] == 512


def test_resnext_templates_at_equal_cost():
    rows = explain("resnext").rows
    assert [r["design"] for r in rows] == ["1x64d", "2x40d", "4x24d", "8x14d", "32x4d"]  # Table 2
    for r in rows:
        c, d = r["cardinality"], r["width"]
        weights = c * (256 * d + 9 * d * d + d * 256)  # 1x1 256 -> Cd, grouped 3x3, 1x1 Cd -> 256
        assert r["params"] == weights + 2 * (2 * c * d + 256)  # a BN (gamma, beta) after each conv
        assert r["macs"] == weights * 56 * 56
    assert rows[0]["params"] == 69_632 + 2 * (128 + 256) and rows[-1]["params"] == 70_144 + 2 * (256 + 256)
    params = [r["params"] for r in rows]
    assert max(params) / min(params) < 1.03


@pytest.mark.parametrize("topic", ["mobilenet", "shufflenet", "squeezenet", "resnext"])
def test_cli_explains_the_new_topics(topic, capsys):
    assert main(["explain", topic]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") > 5 and explain(topic).title in out
