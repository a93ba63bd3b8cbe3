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
