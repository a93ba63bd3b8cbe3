"""The interface every cnnzoo model has (timm's): features, head, resettable classifier."""

from torch import Tensor, nn


class ImageClassifier(nn.Module):
    """Base of every cnnzoo network.

    A family implements ``forward_features`` (image -> final feature map) and
    ``forward_head`` (feature map -> logits, or the pooled features with
    ``pre_logits=True``), sets ``num_features`` (the width ``forward_head`` pools
    to) and keeps its last linear layer in the attribute named by ``classifier``.
    """

    num_features: int
    classifier: str = "fc"  # attribute holding the final nn.Linear

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return getattr(self, self.classifier)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer by a freshly initialised one with ``num_classes`` outputs."""
        old = self.get_classifier()
        setattr(self, self.classifier, nn.Linear(old.in_features, num_classes, device=old.weight.device))


def he_init_(model: nn.Module) -> None:
    """He et al.'s init (arXiv 1502.01852) for conv layers (fan-out, ReLU gain); batch norm to the identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
