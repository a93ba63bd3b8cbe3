"""Equivalence with peer libraries: our model, loaded from a peer model's state dict, gives the peer's logits.

Also the peers' weight files as their caches hold them (``weights_peer``, ``cache_weights``): weights cannot be
downloaded here, so tests (and ``benchmarks/timm_suite.py --fill-cache``) save a randomly initialised peer
model under the file name its release has.
"""

import functools
from pathlib import Path

import torch

import cnnzoo
from cnnzoo import hub
from conftest import require_peer


def randomize_batchnorm(model: torch.nn.Module, calibrate: torch.Tensor | None = None) -> torch.nn.Module:
    """Non-trivial BN scales, shifts and statistics, so that any mis-mapped BN tensor changes the logits.

    With ``calibrate`` (a batch of inputs), the statistics are those of that batch, layer by layer, as
    training would leave them: every layer's output then keeps unit scale, so the logits depend on the input
    and on every layer. Drawn at random instead, they leave a default-initialised deep network's signal to
    fade until its logits are little more than the classifier's bias, and a wrong input transform, pool or
    branch can change them by less than a comparison's tolerance.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in norms:
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.1, 0.1)
        if calibrate is not None:
            modes = [(m, m.training) for m in model.modules()]
            momenta = [m.momentum for m in norms]
            model.eval()  # auxiliary heads and dropout stay off; only the norms see the batch
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: after one batch, that batch's mean and variance
                m.train()
            model(calibrate)
            for m, training in modes:
                m.training = training
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
    return model


def assert_same_logits(name: str, peer: torch.nn.Module, size: int, batch: int = 2, source: str = "torchvision",
                       tol: float = 1e-4) -> None:
    """Load ``peer``'s weights into cnnzoo's ``name`` and compare logits in eval mode, fp32, at ``size`` x ``size``.

    Ours is built on the meta device and only then allocated: every tensor it has comes from the
    peer (a strict load), and we skip initialising 100M+ parameters only to overwrite them.
    """
    peer = randomize_batchnorm(peer, calibrate=torch.randn(4, 3, size, size)).eval()
    with torch.device("meta"):
        ours = cnnzoo.create_model(name)
    ours = cnnzoo.import_weights(ours.to_empty(device="cpu"), peer.state_dict(), source=source).eval()
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        expected, got = peer(x), ours(x)
    # the logits must vary (across classes, and across inputs) by well over the tolerance, or a wrong layer hides
    assert expected.std() > 10 * tol, "logits too uniform to show a difference"
    assert batch == 1 or (expected[0] - expected[1]).abs().max() > 10 * tol, "logits hardly depend on the input"
    assert (got - expected).abs().max() <= tol


@functools.cache
def torchvision_weights() -> dict:
    """torchvision's published files by URL: (builder name, weights enum entry)."""
    torchvision = require_peer("torchvision")
    return {w.url: (name, w) for name in torchvision.models.list_models(torchvision.models)
            for w in torchvision.models.get_model_weights(name)}


def weights_peer(cfg: hub.PretrainedCfg) -> torch.nn.Module:
    """A randomly initialised model of the library that publishes ``cfg``'s file, built as that file was saved."""
    if cfg.source == "torchvision":
        torchvision = require_peer("torchvision")
        builder, _ = torchvision_weights()[cfg.url]
        # GoogLeNet's and Inception-v3's files hold their auxiliary heads; PyTorch's init (not torchvision's
        # small truncated normal) gives logits large enough to show a wrong tensor.
        kwargs = dict(aux_logits=True, init_weights=False) if builder in ("googlenet", "inception_v3") else {}
        return torchvision.models.get_model(builder, **kwargs)
    if cfg.source == "timm":
        timm = require_peer("timm")
        return timm.create_model(cfg.hf_hub_id.split("/")[1].partition(".")[0])
    polynet = require_peer("pretrainedmodels.models.polynet")
    return polynet.PolyNet()


def cache_weights(cfg: hub.PretrainedCfg, state_dict: dict) -> None:
    """``state_dict`` saved where a download of ``cfg`` would have put it: the Hugging Face cache as
    huggingface_hub lays it out (refs/main names the snapshot) for a file on the Hub, else torch.hub's folder."""
    if not cfg.hf_hub_id:
        hub.checkpoints_dir().mkdir(parents=True, exist_ok=True)
        torch.save(state_dict, hub.checkpoints_dir() / cfg.file)
        return
    safetensors_torch = require_peer("safetensors.torch")
    huggingface_hub = require_peer("huggingface_hub")
    repo = Path(huggingface_hub.constants.HF_HUB_CACHE, "models--" + cfg.hf_hub_id.replace("/", "--"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    safetensors_torch.save_file({k: v.contiguous().clone() for k, v in state_dict.items()},
                                str(snapshot / "model.safetensors"))
