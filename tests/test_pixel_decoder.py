"""The pixel-regressive likelihood: causal in raster order, a warm start that keeps the factorized
model's ELBO exactly, and training that lowers the loss."""
from __future__ import annotations

import pytest
import torch

from serecodec.model import ModelConfig, SeReVAE

TINY = {"num_layers": 2, "latent_dim": 4, "evidence_hidden": 32, "latent_hidden": 32, "gaussian_hidden": 32,
        "decoder_hidden": 32, "bijector_hidden": 8, "evidence_features": 8, "latent_features": 8,
        "image_pixels": 64, "tile_height": 8, "tile_width": 8}


def _pixel_model(seed=0):
    torch.manual_seed(seed)
    model = SeReVAE(ModelConfig(**TINY, pixel_context="jbig2-16", pixel_features=2, pixel_hidden=8)).eval()
    with torch.no_grad():                          # a non-zero g, so the test sees the contexts act
        model.pixel_context.out_weight.normal_()
    return model


def test_each_logit_sees_only_pixels_before_it():
    model = _pixel_model()
    torch.manual_seed(1)
    x = torch.bernoulli(torch.full((3, 64), 0.4))
    zs = [torch.randn(3, 4) for _ in range(2)]
    with torch.no_grad():
        base = model.decode_logits(zs, x)
        for j in range(64):
            flipped = x.clone()
            flipped[:, j] = 1 - flipped[:, j]
            moved = (model.decode_logits(zs, flipped) - base).abs().amax(0) > 0
            assert not moved[:j + 1].any(), j               # pixel j and those before it do not see x_j
            if j < 55:
                assert moved[j + 1:].any(), j               # and some later pixel does


def test_warm_start_keeps_the_factorized_elbo():
    torch.manual_seed(2)
    source = SeReVAE(ModelConfig(**TINY)).eval()
    target = SeReVAE(ModelConfig(**TINY, pixel_context="jbig2-16")).eval()
    fresh = target.warm_start(source.state_dict())
    assert fresh and all(name.startswith("pixel_context.") for name in fresh)
    x = torch.bernoulli(torch.full((5, 64), 0.3))
    with torch.no_grad():
        torch.manual_seed(3)
        a = source(x).elbo
        torch.manual_seed(3)
        b = target(x).elbo
    assert torch.allclose(a, b, atol=1e-5)


def test_a_few_steps_of_training_lower_the_loss():
    model = _pixel_model(4).train()
    torch.manual_seed(5)
    x = torch.zeros(32, 8, 8)
    x[:, 2:6, 3] = 1                                         # strokes: the context predicts them
    x = x.reshape(32, 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        trace = model(x)
        loss = (trace.kl.sum(-1) - trace.log_px).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_the_coding_export_refuses_it_for_now():
    from serecodec.export import export_coding_model
    with pytest.raises(ValueError, match="pixel-regressive"):
        export_coding_model(_pixel_model())


def test_resnet_and_pixel_context_do_not_combine():
    with pytest.raises(ValueError):
        ModelConfig(variant="resnet", pixel_context="jbig2-16")
