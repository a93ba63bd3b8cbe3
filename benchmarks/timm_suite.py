"""Run timm's own model tests (``tests/test_models.py`` of pytest-image-models) on cnnzoo's models.

timm's entry points that the file uses to find and build models are routed to
cnnzoo (``create_model``, ``list_models``, ``list_pretrained``,
``get_pretrained_cfg(_value)``, ``is_model``, ``list_modules``, and the fx
notrace lists); everything else (timm's ``FeatureInfo``, its format helpers,
its model classes in ``isinstance`` checks) stays timm's. TorchScript tests
are left out (the issue does not ask for TorchScript), and so are the tests
of two timm-only models (NaFlexViT, Gemma-4 ViT), which build those by name.

The test file is not part of cnnzoo: give its path (e.g. a checkout of
huggingface/pytorch-image-models at the installed timm's version)::

    PYTHONPATH=src python benchmarks/timm_suite.py /path/to/pytorch-image-models/tests/test_models.py [-x] [-k ...]

``--fill-cache`` first fills a temporary torch.hub and Hugging Face cache with
every published file cnnzoo knows, each a randomly initialised peer model saved
under its release's file name (weights cannot be downloaded here), so that
timm's pretrained-loading tests run offline instead of failing on the network.
Extra arguments go to pytest. The pass/fail counts are pytest's last line;
the recorded run is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

import cnnzoo
from cnnzoo import hub, layers, registry

DESELECT = "not torchscript and not naflexvit and not gemma4"


def route_timm_to_cnnzoo() -> None:
    """Point timm's model-finding and model-building functions at cnnzoo's."""
    import timm
    import timm.models

    routes = dict(
        create_model=registry.create_model,
        list_models=registry.list_models,
        list_pretrained=registry.list_pretrained,
        list_modules=registry.list_modules,
        is_model=registry.is_model,
        model_entrypoint=registry.model_entrypoint,
        get_pretrained_cfg=registry.get_pretrained_cfg,
        get_pretrained_cfg_value=registry.get_pretrained_cfg_value,
        get_notrace_modules=layers.get_notrace_modules,
        get_notrace_functions=layers.get_notrace_functions,
    )
    for module in (timm, timm.models):
        for name, fn in routes.items():
            if hasattr(module, name):
                setattr(module, name, fn)


def fill_cache(root: Path) -> None:
    """torch.hub's and Hugging Face's caches under ``root``, holding every tag's file (a random peer model's)."""
    os.environ.update(TORCH_HOME=str(root / "torch"), HF_HUB_CACHE=str(root / "hf"), CNNZOO_OFFLINE="1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from peer_models import cache_weights, weights_peer

    tags = hub.list_pretrained()
    for tag in tags:
        cfg = hub.get_pretrained_cfg(tag)
        cache_weights(cfg, weights_peer(cfg).state_dict())
    print(f"cache filled with {len(tags)} files under {root}", flush=True)


def main(argv: list[str]) -> int:
    fill = "--fill-cache" in argv
    argv = [a for a in argv if a != "--fill-cache"]
    if not argv or not Path(argv[0]).is_file():
        print("usage: timm_suite.py PATH/TO/pytorch-image-models/tests/test_models.py [--fill-cache] [pytest args]",
              file=sys.stderr)
        return 2
    if fill:
        cache = tempfile.TemporaryDirectory(prefix="timm-suite-cache-")
        fill_cache(Path(cache.name))
    route_timm_to_cnnzoo()
    print(f"cnnzoo {cnnzoo.__version__}: {len(cnnzoo.list_models())} models", flush=True)
    test_file, extra = argv[0], list(argv[1:])
    select = DESELECT
    if "-k" in extra:  # one -k only counts: narrow ours with the caller's
        i = extra.index("-k")
        select = f"({DESELECT}) and ({extra[i + 1]})"
        del extra[i:i + 2]
    # timm's own markers and timeouts are not registered here: run under an empty config.
    return pytest.main([test_file, "-c", "/dev/null", "--rootdir", str(Path(test_file).parent), "-p", "no:cacheprovider",
                        "-k", select, "-W", "ignore::pytest.PytestUnknownMarkWarning", "-q", "-rf", *extra])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
