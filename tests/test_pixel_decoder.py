"""The pixel-regressive likelihood: causal in raster order, a warm start that keeps the factorized
model's ELBO exactly, training that lowers the loss, and exact bits-back coding with it (raster
pops vectorized over a batch, padded tiles, particles, warm start, unordered, engines)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from serecodec.bitsback import initial_word_count
from serecodec.causal import neighbours
from serecodec.codec import Codec
from serecodec.coding_model import CodingModel
from serecodec.export import export_coding_model
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


@pytest.fixture(scope="module")
def pixel_coding():
    """A tiny 8x8 pixel-regressive model, exported; its g is random but active."""
    return CodingModel(export_coding_model(_pixel_model(7)))


def _strokes(count, seed, shape=(8, 8)):
    rng = np.random.default_rng(seed)
    images = (rng.random((count,) + shape) < 0.15).astype(np.uint8)
    images[:, 2:6, 3] = 1
    return images


@pytest.mark.parametrize("shifts", [None, (0, -1), (-2, 3), (25, 0)])
def test_the_kernel_computes_the_exported_integer_layers(pixel_coding, shifts):
    """g as compiled (context table, shifts, clamps) equals the two IntLinear layers of the
    export applied to [a, h, context bits at activation scale]: the table and kernel are exact,
    for the exported shifts and for others (none, left shifts) a model file may hold."""
    from dataclasses import replace

    from serecodec.fixedpoint import ACT_BITS
    from serecodec.int_pixel import IntPixelContext
    net = pixel_coding.pixel_net
    if shifts is not None:
        net = IntPixelContext(net.template, net.features, replace(net.hidden_layer, shift=shifts[0]),
                              replace(net.out_layer, shift=shifts[1]), net.tile_shape)
    rng = np.random.default_rng(3)
    decoded = rng.integers(-40_000, 40_000, (5, 64 * 3))
    x = _strokes(5, 4).reshape(5, 64)
    logits = net.teacher_logits(decoded, x)
    bits = neighbours(x.reshape(5, 8, 8), net.template).reshape(5 * 64, -1).astype(np.int64)
    inputs = np.concatenate([net.split(decoded).reshape(5 * 64, 3), bits << ACT_BITS], axis=1)
    engine = pixel_coding.engine
    hidden = np.maximum(net.hidden_layer(inputs, engine), 0)
    expected = np.clip(inputs[:, 0] + net.out_layer(hidden, engine)[:, 0], -(1 << 22), 1 << 22)
    assert np.array_equal(logits.reshape(-1), expected)


def test_integer_rate_matches_the_float_elbo(pixel_coding):
    from serecodec.evaluate import elbo_per_image
    images = _strokes(200, 5).reshape(200, 64)
    model = _pixel_model(7)
    float_rate = np.mean([-elbo_per_image(model, torch.as_tensor(images, dtype=torch.float32), seed=s)[0].mean().item()
                          for s in range(4)])
    coding_rate = np.mean([pixel_coding.expected_rate(images, seed=s)["neg_elbo_nats"] for s in range(4)])
    assert abs(coding_rate - float_rate) < 0.01 * float_rate, (coding_rate, float_rate)


@pytest.mark.parametrize("shape", [(8, 8), (11, 13)])
def test_bits_back_round_trips_in_raster_order(pixel_coding, shape):
    """Whole tiles and padded edge tiles (masked pixels uncoded, read as 0 in contexts); the
    coded rate of a long run sits at the coding model's expected rate."""
    images = _strokes(120, 6, shape)
    codec = Codec(pixel_coding, warm_start=False)
    data = codec.compress(images, method="bits-back")
    assert codec.read(data).method == "bits-back"
    assert np.array_equal(codec.decompress(data), images)
    if shape == (8, 8):
        archive = codec.read(data)
        net = (archive.payload_bits - 32 * initial_word_count(pixel_coding)) * np.log(2) / len(images)
        expected = np.mean([pixel_coding.expected_rate(images.reshape(120, -1), seed=s)["neg_elbo_nats"]
                            for s in range(4)])
        assert net < 1.03 * expected + 1.0, (net, expected)


def test_archives_do_not_depend_on_batch_size_or_engine(pixel_coding):
    images = _strokes(40, 8)
    reference = Codec(pixel_coding, warm_start=False).compress(images, method="bits-back")
    for codec in (Codec(pixel_coding.with_engine("torch"), warm_start=False),
                  Codec(pixel_coding, max_batch=7, warm_start=False)):
        data = codec.compress(images, method="bits-back")
        if codec.models.max_batch == 256:
            assert data == reference
        assert np.array_equal(Codec(pixel_coding, warm_start=False).decompress(data), images)


@pytest.mark.parametrize("options", [{"particles": 3}, {"warm_start": True}])
def test_particles_and_warm_start_keep_working(pixel_coding, options):
    images = _strokes(30, 9)
    codec = Codec(pixel_coding, **options)
    assert np.array_equal(codec.decompress(codec.compress(images, method="bits-back")), images)


def test_unordered_collections_round_trip(pixel_coding):
    images = _strokes(25, 10)
    codec = Codec(pixel_coding, warm_start=False)
    decoded = codec.decompress(codec.compress(images, method="bits-back", ordered=False))
    assert sorted(map(bytes, decoded)) == sorted(map(bytes, images))


def test_resnet_and_pixel_context_do_not_combine():
    with pytest.raises(ValueError):
        ModelConfig(variant="resnet", pixel_context="jbig2-16")


def test_streams_and_chunks_keep_working(pixel_coding):
    images = _strokes(24, 11)
    codec = Codec(pixel_coding, warm_start=False, chunk_pixels=64 * 10)     # three chunks of bits-back
    stream = codec.stream()
    for image in images[:12]:
        stream.append(image)
    stream.append(images[12:])
    assert np.array_equal(codec.decompress(stream.to_bytes()), images)
    data = codec.compress(images, method="bits-back")
    assert len(codec.read(data).chunks) == 3
    assert np.array_equal(codec.decompress(data), images)
