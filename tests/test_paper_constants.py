"""The papers' numbers, asserted where they live: every shipped recipe, every default a paper fixes, and each
normalisation or scaling constant checked against the paper's formula on a small input worked out by hand.

Values come from the papers as given in the project's reference notes (claims.md, architectures.md); where
those notes give no recipe (ResNet, DenseNet, AlexNet, VGG), the value is the paper's own, section named.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnzoo
from cnnzoo.engine import RMSpropTF, TrainConfig, build_optimizer, build_scheduler, load_config
from cnnzoo.engine.trainer import classification_loss
from cnnzoo.layers import LocalResponseNorm, StochasticDepth, survival_probs
from conftest import recipe, recipes

# ---- recipes: file -> (paper, the values the paper fixes) ---------------------------------------------------

RECIPES = {
    "alexnet_imagenet.yaml": ("Krizhevsky et al. 2012, Sections 4.1, 5", dict(
        model="alexnet", img_size=227, augment="alexnet", epochs=90, batch_size=128, optimizer="sgd", lr=0.01,
        momentum=0.9, nesterov=False, weight_decay=5e-4, gamma=0.1, label_smoothing=0.0, eval_crops="ten")),
    "vgg_imagenet.yaml": ("Simonyan & Zisserman 2014, Section 3.1", dict(
        model="vgg16", img_size=224, augment="vgg", epochs=74, batch_size=256, optimizer="sgd", lr=0.01,
        momentum=0.9, nesterov=False, weight_decay=5e-4, gamma=0.1, label_smoothing=0.0)),
    "googlenet_imagenet.yaml": ("Szegedy et al. 2014 (claims.md: GoogLeNet)", dict(
        model="googlenet", model_kwargs={"aux_logits": True}, aux_weight=0.3, img_size=224, augment="inception",
        optimizer="sgd", momentum=0.9, schedule="exponential", schedule_unit="epoch", step_size=8, gamma=0.96)),
    "resnet_cifar10.yaml": ("He et al. 2015, Section 4.2", dict(
        model="resnet20", data="cifar10", augment="cifar", batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
        nesterov=False, weight_decay=1e-4, schedule="multistep", schedule_unit="iter", milestones=[32000, 48000],
        gamma=0.1, label_smoothing=0.0)),
    "resnet_imagenet.yaml": ("He et al. 2015, Section 3.4", dict(
        model="resnet50", img_size=224, augment="vgg", batch_size=256, optimizer="sgd", lr=0.1, momentum=0.9,
        weight_decay=1e-4, gamma=0.1, label_smoothing=0.0, eval_crops="ten")),
    "stochastic_depth_cifar10.yaml": ("Huang et al. 2016, stochastic depth (claims.md, architectures.md)", dict(
        model="resnet110", drop_path_rate=0.5,
        model_kwargs={"drop_path_mode": "batch", "drop_path_schedule": "linear"}, data="cifar10", augment="cifar",
        epochs=500, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
        schedule="multistep", schedule_unit="epoch", milestones=[250, 375], gamma=0.1)),
    "densenet_bc_cifar10.yaml": ("Huang et al. 2016, DenseNet, Section 4.2", dict(
        model="densenet_bc_100_12", data="cifar10", augment="cifar", epochs=300, batch_size=64, optimizer="sgd",
        lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, schedule="multistep", milestones=[150, 225],
        gamma=0.1)),
    "xception_imagenet.yaml": ("Chollet 2016, Xception (claims.md)", dict(
        model="xception", img_size=299, augment="inception", optimizer="sgd", lr=0.045, momentum=0.9,
        weight_decay=1e-5, schedule="exponential", schedule_unit="epoch", step_size=2, gamma=0.94)),
    "inception_v3_imagenet.yaml": ("Szegedy et al. 2015, Rethinking the Inception Architecture, Sections 7-8", dict(
        model="inception_v3", img_size=299, augment="inception", epochs=100, batch_size=1600, optimizer="rmsprop_tf",
        rmsprop_decay=0.9, rmsprop_eps=1.0, lr=0.045, schedule="exponential", schedule_unit="epoch", step_size=2,
        gamma=0.94, label_smoothing=0.1)),
    "inception_v4_imagenet.yaml": ("Szegedy et al. 2016, Inception-v4, Section 4", dict(
        model="inception_v4", img_size=299, augment="inception", optimizer="rmsprop_tf", rmsprop_decay=0.9,
        rmsprop_eps=1.0, lr=0.045, schedule="exponential", schedule_unit="epoch", step_size=2, gamma=0.94)),
    "resnext_imagenet.yaml": ("Xie et al. 2016, ResNeXt, Section 4", dict(
        model="resnext50_32x4d", img_size=224, augment="inception", batch_size=256, optimizer="sgd", lr=0.1,
        momentum=0.9, weight_decay=1e-4, schedule="multistep", gamma=0.1)),
    "squeezenet_imagenet.yaml": ("Iandola et al. 2016, SqueezeNet (the released solver)", dict(
        model="squeezenet1_0", img_size=227, augment="alexnet", batch_size=512, optimizer="sgd", lr=0.04,
        momentum=0.9, weight_decay=2e-4, schedule="linear", schedule_unit="iter", min_lr=0.0)),
    "efficientnet_b0_imagenet.yaml": ("Tan & Le 2019, EfficientNet, Section 5.2", dict(
        model="efficientnet_b0", drop_path_rate=0.2, img_size=224, optimizer="rmsprop_tf", rmsprop_decay=0.9,
        momentum=0.9, lr=0.256, schedule="exponential", schedule_unit="epoch", step_size=2.4, gamma=0.97,
        weight_decay=1e-5)),
    "mobilenet_v1_imagenet.yaml": ("Howard et al. 2017, MobileNets, Section 4 (Inception-v3's RMSProp)", dict(
        model="mobilenet_v1_100", img_size=224, optimizer="rmsprop_tf", rmsprop_decay=0.9, rmsprop_eps=1.0,
        label_smoothing=0.0)),
    "pyramidnet_cifar10.yaml": ("Han et al. 2017, PyramidNet, Section 4", dict(
        model="pyramidnet110_a48", data="cifar10", augment="cifar", epochs=300, batch_size=128, optimizer="sgd",
        momentum=0.9, nesterov=True, lr=0.1, weight_decay=1e-4, schedule="multistep", milestones=[150, 225],
        gamma=0.1)),
    "shufflenet_v1_imagenet.yaml": ("Zhang et al. 2017, ShuffleNet, Section 4", dict(
        model="shufflenet_v1_g3", img_size=224, batch_size=1024, lr=0.5, min_lr=0.0, schedule="linear",
        schedule_unit="iter", weight_decay=4e-5)),
    "polynet_imagenet.yaml": ("Zhang et al. 2016, PolyNet (claims.md)", dict(
        model="polynet", img_size=331, augment="inception", optimizer="rmsprop_tf", rmsprop_decay=0.9,
        rmsprop_eps=1.0, lr=0.45, schedule="multistep", schedule_unit="iter",
        milestones=[160_000, 320_000, 480_000], gamma=0.1)),
    # the paper's SDLM optimiser and global rates have no counterpart here: the recipe's SGD rate is ours
    "lenet5_digits.yaml": ("LeCun et al. 1998, Sections II.B, III.C (20 passes, undistorted training set)", dict(
        model="lenet5", augment="none", epochs=20, label_smoothing=0.0)),
}


def test_every_shipped_recipe_is_checked():
    assert sorted(p.name for p in recipes()) == sorted(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_holds_the_papers_values(name):
    paper, expected = RECIPES[name]
    cfg = load_config(recipe(name))
    wrong = {key: (getattr(cfg, key), value) for key, value in expected.items()
             if getattr(cfg, key) != (pytest.approx(value) if isinstance(value, float) else value)}
    assert not wrong, f"{name} differs from {paper} (recipe, paper): {wrong}"


def lr_at(name: str, epoch: float, steps_per_epoch: int = 100) -> float:
    """The learning rate a recipe's scheduler gives at ``epoch`` (stepped as the trainer steps it)."""
    cfg = load_config(recipe(name))
    opt = build_optimizer(cfg, nn.Linear(1, 1))
    sched = build_scheduler(cfg, opt, steps_per_epoch)
    for _ in range(round(epoch * steps_per_epoch)):
        opt.step()
        sched.step()
    return opt.param_groups[0]["lr"]


def test_xception_lr_is_0045_times_094_every_two_epochs():
    """Chollet 2016: "learning rate 0.045, learning rate decay: decay of rate 0.94 every 2 epochs"."""
    for epoch in (0, 1.9, 2, 5, 10):
        assert lr_at("xception_imagenet.yaml", epoch, 10) == pytest.approx(0.045 * 0.94 ** math.floor(epoch / 2))


def test_googlenet_lr_falls_4_percent_every_8_epochs():
    """Szegedy et al. 2014, Section 6: "decreasing the learning rate by 4% every 8 epochs"."""
    assert lr_at("googlenet_imagenet.yaml", 7.9, 10) == pytest.approx(0.1)
    assert lr_at("googlenet_imagenet.yaml", 16, 10) == pytest.approx(0.1 * 0.96**2)


def test_polynet_lr_is_045_times_01_every_160k_iterations():
    """Zhang et al. 2016 (claims.md): lr 0.45, multiplied by 0.1 every 160k iterations, three times."""
    cfg = load_config(recipe("polynet_imagenet.yaml"))
    sched = build_scheduler(cfg, build_optimizer(cfg, nn.Linear(1, 1)), steps_per_epoch=2500).lr_lambdas[0]
    assert [cfg.lr * sched(it) for it in (0, 159_999, 160_000, 320_000, 480_000, 10**6)] == pytest.approx(
        [0.45, 0.45, 0.045, 0.0045, 0.00045, 0.00045])


def test_stochastic_depth_recipe_divides_by_10_at_epochs_250_and_375():
    """Huang et al. 2016 (claims.md): lr 0.1 divided by 10 at epochs 250 and 375 of 500."""
    assert [lr_at("stochastic_depth_cifar10.yaml", e, 2) for e in (249.5, 250, 374.5, 375)] == pytest.approx(
        [0.1, 0.01, 0.01, 0.001])


def test_recipe_optimizer_is_built_with_the_papers_settings():
    """The built optimizer carries the recipe's values (Nesterov for stochastic depth, RMSProp-TF for PolyNet)."""
    sgd = build_optimizer(load_config(recipe("stochastic_depth_cifar10.yaml")), nn.Linear(1, 1))
    assert isinstance(sgd, torch.optim.SGD)
    assert {k: sgd.defaults[k] for k in ("lr", "momentum", "nesterov", "weight_decay")} == pytest.approx(
        dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4))
    rms = build_optimizer(load_config(recipe("polynet_imagenet.yaml")), nn.Linear(1, 1))
    assert isinstance(rms, RMSpropTF) and (rms.defaults["decay"], rms.defaults["eps"]) == (0.9, 1.0)


# ---- defaults the papers fix ----------------------------------------------------------------------------------

def test_training_defaults_the_papers_fix():
    cfg = TrainConfig()
    assert cfg.aux_weight == 0.3  # GoogLeNet (architectures.md): "add 0.3 x their loss"
    assert (cfg.rmsprop_decay, cfg.rmsprop_eps) == (0.9, 1.0)  # PolyNet / Inception RMSProp: decay 0.9, eps 1.0
    assert cfg.label_smoothing == 0.0  # none of the implemented papers smooths labels


def test_rmsprop_tf_defaults_are_polynets():
    """PolyNet (claims.md): RMSProp with decay 0.9 and epsilon 1.0."""
    opt = RMSpropTF([nn.Parameter(torch.zeros(1))])
    assert (opt.defaults["decay"], opt.defaults["eps"]) == (0.9, 1.0)


def test_googlenet_aux_losses_are_added_with_weight_03():
    """GoogLeNet (architectures.md): the loss is main + 0.3 x each auxiliary loss, with the default config."""
    labels = torch.tensor([0, 1])
    main, aux1, aux2 = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0))
    ce = nn.CrossEntropyLoss()
    loss, logits = classification_loss((main, aux1, aux2), labels, ce, TrainConfig().aux_weight)
    assert loss.item() == pytest.approx((ce(main, labels) + 0.3 * ce(aux1, labels) + 0.3 * ce(aux2, labels)).item())
    assert logits is main


def test_googlenet_aux_heads_drop_07():
    """architectures.md: GoogLeNet's auxiliary heads: avgpool 5x5/3, 1x1 conv 128, FC 1024, dropout 0.7."""
    with torch.device("meta"):
        model = cnnzoo.create_model("googlenet", aux_logits=True)
    drops = [m.p for name, m in model.named_modules() if isinstance(m, nn.Dropout) and name.startswith("aux")]
    assert drops == [0.7, 0.7]


def test_xception_dropout_05_before_the_classifier():
    """Chollet 2016 (claims.md): dropout 0.5 before the classifier."""
    with torch.device("meta"):
        model = cnnzoo.create_model("xception")
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5]


def test_stochastic_depth_default_schedule_is_linear_to_p_l_half():
    """Huang et al. 2016: p_l = 1 - l/L (1 - p_L); with the recipe's p_L = 0.5 on ResNet-110's 54 blocks,
    the expected depth is 40.25 (claims.md)."""
    assert survival_probs(4, 0.5) == pytest.approx([1 - 1 / 8, 1 - 2 / 8, 1 - 3 / 8, 0.5])
    cfg = load_config(recipe("stochastic_depth_cifar10.yaml"))
    with torch.device("meta"):
        model = cnnzoo.create_model(cfg.model, drop_path_rate=cfg.drop_path_rate, **cfg.model_kwargs)
    gates = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    assert [g.survival_prob for g in gates] == pytest.approx([1 - l / 54 * 0.5 for l in range(1, 55)])
    assert sum(g.survival_prob for g in gates) == pytest.approx(40.25)


# ---- normalisation and scaling constants, on inputs worked out by hand ------------------------------------

A = [10.0, 20.0, 30.0, 40.0, 50.0]  # one position, five channels


def lrn_by_hand(a, n, alpha, beta, k, alpha_on_mean=False):
    """b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta (AlexNet 3.3); Caffe, which
    GoogLeNet's release uses, divides alpha by n (the mean of the window instead of its sum)."""
    out = []
    for i, a_i in enumerate(a):
        window = sum(a_j**2 for a_j in a[max(0, i - n // 2): min(len(a) - 1, i + n // 2) + 1])
        out.append(a_i / (k + (alpha / n if alpha_on_mean else alpha) * window) ** beta)
    return out


def test_lrn_by_hand():
    # e.g. channel 0: 10 / (2 + 1e-4 * (100 + 400 + 900))^0.75 = 10 / 2.14^0.75
    assert lrn_by_hand(A, 5, 1e-4, 0.75, 2.0)[0] == pytest.approx(10 / 2.14**0.75)
    x = torch.tensor(A).view(1, 5, 1, 1)
    got = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(x).flatten().tolist()
    assert got == pytest.approx(lrn_by_hand(A, 5, 1e-4, 0.75, 2.0), rel=1e-6)
    # the defaults are AlexNet's: k = 2, n = 5, alpha = 1e-4, beta = 0.75
    assert LocalResponseNorm()(x).flatten().tolist() == pytest.approx(got, rel=1e-6)
    assert LocalResponseNorm().extra_repr() == "size=5, alpha=0.0001 (on the sum), beta=0.75, k=2.0"


@pytest.mark.parametrize("name, attr", [("alexnet", "norm1"), ("alexnet", "norm2"), ("vgg11_lrn", "features.2")])
def test_alexnet_and_vgg_lrn_constants(name, attr):
    """AlexNet 3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75 on the window's sum; VGG's A-LRN uses the same."""
    with torch.device("meta"):
        layer = cnnzoo.create_model(name).get_submodule(attr)
    got = layer(torch.tensor(A).view(1, 5, 1, 1)).flatten().tolist()
    assert got == pytest.approx(lrn_by_hand(A, n=5, alpha=1e-4, beta=0.75, k=2.0), rel=1e-6)


@pytest.mark.parametrize("attr", ["lrn1", "lrn2"])
def test_googlenet_lrn_constants_in_caffes_convention(attr):
    """GoogLeNet's release (Caffe): local_size 5, alpha 1e-4 on the window's mean, beta 0.75, k 1."""
    with torch.device("meta"):
        layer = cnnzoo.create_model("googlenet").get_submodule(attr)
    got = layer(torch.tensor(A).view(1, 5, 1, 1)).flatten().tolist()
    assert got == pytest.approx(lrn_by_hand(A, n=5, alpha=1e-4, beta=0.75, k=1.0, alpha_on_mean=True), rel=1e-6)


def residual_scale(block: nn.Module, x: torch.Tensor) -> float:
    """The factor a residual block applies to its branch, measured: out = relu(x + s * r) with r the output of
    the block's last (linear) 1x1 conv, so s = (out - x) / r where out > 0."""
    seen = {}
    block.conv2d.register_forward_hook(lambda m, args, out: seen.__setitem__("r", out))
    with torch.no_grad():
        out = block.eval()(x)
    r = seen["r"]
    mask = (out > 0) & (r.abs() > 1e-3)
    assert mask.sum() > 100
    s = ((out - x)[mask] / r[mask])
    assert s.std() < 1e-3  # one constant everywhere
    return s.mean().item()


def test_inception_conv_unit_normalises_with_eps_0001_by_hand():
    """Inception-v3/v4 and Inception-ResNet-v2 (TensorFlow's BN, as the released weights): eps = 0.001.

    A 1x1 conv of weight 1 over a batch of +-0.01: batch variance 1e-4, so the BN output is
    0.01 / sqrt(1e-4 + 1e-3) = 0.3015 (PyTorch's default eps 1e-5 would give 0.953)."""
    from cnnzoo.layers import ConvBnAct

    unit = ConvBnAct(1, 1, 1, act_layer=None).train()
    nn.init.ones_(unit.conv.weight)
    x = torch.tensor([0.01, -0.01]).view(2, 1, 1, 1)
    with torch.no_grad():
        assert unit(x).flatten().tolist() == pytest.approx([0.01 / math.sqrt(1e-4 + 1e-3),
                                                            -0.01 / math.sqrt(1e-4 + 1e-3)], rel=1e-5)
    for name in ("inception_v3", "inception_v4", "inception_resnet_v2"):
        with torch.device("meta"):
            model = cnnzoo.create_model(name)
        assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}, name


@pytest.fixture  # per test: mutation testing maps a constructor to the tests that run it
def inception_resnet():
    torch.manual_seed(0)
    return cnnzoo.create_model("inception_resnet_v2")


@pytest.mark.parametrize("stage, channels, scale", [("repeat", 320, 0.17), ("repeat_1", 1088, 0.10),
                                                     ("repeat_2", 2080, 0.20)])
def test_inception_resnet_residual_scales(inception_resnet, stage, channels, scale):
    """architectures.md: the released Inception-ResNet-v2 scales its residuals by 0.17, 0.10, 0.20 (A, B, C)."""
    x = torch.randn(1, channels, 5, 5, generator=torch.Generator().manual_seed(1)) + 2.0  # mostly positive sums
    assert residual_scale(inception_resnet.get_submodule(stage)[0], x) == pytest.approx(scale, abs=1e-3)


def test_polynet_paths_are_scaled_by_beta_03():
    """PolyNet (architectures.md): residual scaling beta = 0.3 on every path: 2-way is relu(x + 0.3 F(x) + 0.3 G(x))."""
    from cnnzoo.models.polynet import PolyInception

    assert load_config(recipe("polynet_imagenet.yaml")).model_kwargs["residual_scale"] == 0.3
    torch.manual_seed(0)
    module = PolyInception("2-way", "A", beta=0.3).eval()
    module.path = lambda k, x: torch.full_like(x, float(k + 1))  # F(x) = 1, G(x) = 2 everywhere
    x = torch.randn(1, 384, 5, 5)
    with torch.no_grad():
        got = module(x)
    assert torch.allclose(got, F.relu(x + 0.3 * 1.0 + 0.3 * 2.0), atol=1e-6)


def test_stochastic_depth_scales_the_branch_by_p_l_at_test_time():
    """Huang et al. 2016: at test time every block runs and its residual branch is multiplied by p_l."""
    shortcut, branch_out = torch.tensor([1.0, -2.0]), torch.tensor([4.0, 8.0])
    with torch.no_grad():
        got = StochasticDepth(0.75).eval()(shortcut, lambda x: x, branch_out.clone())
    assert got.tolist() == [1.0 + 0.75 * 4.0, -2.0 + 0.75 * 8.0]  # [4.0, 4.0]


@pytest.mark.parametrize("name, transitions", [
    # DenseNet-121 (k = 32, stem 64, blocks 6-12-24-16): 64 + 6*32 = 256 -> 128; 128 + 12*32 = 512 -> 256;
    # 256 + 24*32 = 1024 -> 512.
    ("densenet121", [(256, 128), (512, 256), (1024, 512)]),
    # DenseNet-BC-100-12 (stem 2k = 24, 16 layers a block): 24 + 192 = 216 -> 108; 108 + 192 = 300 -> 150.
    ("densenet_bc_100_12", [(216, 108), (300, 150)]),
])
def test_densenet_compression_is_half(name, transitions):
    """Huang et al., DenseNet-BC: a transition outputs floor(theta * m) maps, theta = 0.5."""
    with torch.device("meta"):
        model = cnnzoo.create_model(name)
    convs = [m for n, m in model.named_modules() if n.startswith("features.transition") and isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == transitions


def test_augmentation_constants_are_the_papers():
    """The numbers test_pipeline_statistics measures from the output, asserted exactly where they are defined
    (a 10 % change of a range's end is below what a few thousand samples can resolve)."""
    from cnnzoo.data import transforms

    assert transforms.CIFAR_PAD == 4  # ResNet 4.2: "4 pixels are padded on each side"
    assert transforms.RRC_SCALE == (0.08, 1.0)  # GoogLeNet 6 / claims.md: 8% to 100% of the image
    assert transforms.RRC_RATIO == (3 / 4, 4 / 3)  # GoogLeNet 6 / claims.md: aspect 3/4 to 4/3
    assert transforms.LIGHTING_STD == 0.1  # AlexNet 4.1: alpha_i ~ N(0, 0.1^2)
    assert transforms.VGG_JITTER == (1, 2)  # VGG 3.1: S in [256, 512] for images stored at 256
    assert transforms.STORE_RATIO == 256 / 224  # AlexNet 4.1: 224 crops of 256 images
    assert set(transforms.LIGHTING_AUGMENTS) == {"alexnet", "vgg"}  # AlexNet 4.1, VGG 3.1 ("RGB colour shift")


@pytest.mark.parametrize("name, p, paper", [
    ("squeezenet1_0", 0.5, "SqueezeNet 3.3: dropout 50% after fire9"),
    ("inception_v4", 0.2, "Inception-v4, Figure 9: dropout keep 0.8"),
    ("alexnet", 0.5, "AlexNet 4.2: dropout 0.5 in the first two FC layers"),
])
def test_dropout_rates_the_papers_fix(name, p, paper):
    with torch.device("meta"):
        model = cnnzoo.create_model(name)
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {p}, paper
