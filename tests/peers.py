"""Equivalence with peer libraries: our model, loaded from a peer model's state dict, gives the peer's logits."""

import torch

import cnnzoo


def randomize_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics, scales and shifts, so that any mis-mapped BN tensor changes the logits."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


def assert_same_logits(name: str, peer: torch.nn.Module, size: int, batch: int = 2, source: str = "torchvision",
                       tol: float = 1e-4) -> None:
    """Load ``peer``'s weights into cnnzoo's ``name`` and compare logits in eval mode, fp32, at ``size`` x ``size``.

    Ours is built on the meta device and only then allocated: every tensor it has comes from the
    peer (a strict load), and we skip initialising 100M+ parameters only to overwrite them.
    """
    peer = randomize_batchnorm(peer).eval()
    with torch.device("meta"):
        ours = cnnzoo.create_model(name)
    ours = cnnzoo.import_weights(ours.to_empty(device="cpu"), peer.state_dict(), source=source).eval()
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        expected, got = peer(x), ours(x)
    assert expected.abs().max() > 1e-2, "logits too small to show a difference"
    assert (got - expected).abs().max() <= tol
