import math

import pytest
import torch

from serecodec.evaluate import elbo_per_image, iw_log_likelihood
from serecodec.model import ModelConfig, SeReVAE
from tests.conftest import tiny_config


def test_paper_model_has_the_table5_shapes():
    model = SeReVAE(ModelConfig())
    assert model.evidence.first_weight.shape == (784, 10 * 256)
    assert model.evidence.weights[-1].shape == (10, 256, 20)
    assert model.posteriors[1].first_weight.shape == (40, 2 * 256)   # [evidence 20, latent 20]
    assert model.priors[1].weights[-1].shape == (2, 256, 10)
    assert model.bijectors[1].weights[0].shape == (3, 20, 20)
    assert model.decoder.first_weight.shape == (100, 512)
    assert model.decoder.weights[-1].shape == (1, 512, 784)


@pytest.mark.parametrize("variant,prior", [("sere", "learned"), ("dlgm", "learned"), ("sere", "standard")])
def test_forward_pass_shapes_and_kl(digits, variant, prior):
    model = SeReVAE(tiny_config(variant=variant, prior=prior))
    trace = model(torch.as_tensor(digits[:16]).float())
    assert trace.log_px.shape == (16,) and trace.kl.shape == (16, 3) and trace.log_ratio.shape == (16, 3)
    assert (trace.kl >= 0).all() and (trace.log_px <= 0).all()
    assert torch.isfinite(trace.elbo).all()


def test_dlgm_posterior_and_prior_ignore_previous_latent():
    model = SeReVAE(tiny_config(variant="dlgm")).eval()
    evidence = torch.randn(5, 8)
    a, b = torch.randn(5, 4), torch.randn(5, 4) * 10
    for layer in range(1, 3):
        torch.testing.assert_close(model.layer_posterior(layer, evidence, a), model.layer_posterior(layer, evidence, b))
        torch.testing.assert_close(model.layer_prior(layer, a, 5), model.layer_prior(layer, b, 5))
    sere = SeReVAE(tiny_config()).eval()
    assert not torch.allclose(sere.layer_posterior(1, evidence, a)[0], sere.layer_posterior(1, evidence, b)[0])
    assert not torch.allclose(sere.layer_prior(1, a, 5)[0], sere.layer_prior(1, b, 5)[0])


def test_importance_weighting_bounds(digits):
    model = SeReVAE(tiny_config()).eval()
    x = torch.as_tensor(digits[:40]).float()
    elbo, _, _ = elbo_per_image(model, x)
    iw1 = torch.stack([iw_log_likelihood(model, x, samples=1, seed=s) for s in range(200)]).mean(0)
    iw64 = iw_log_likelihood(model, x, samples=64)
    # k = 1 is an unbiased estimate of the ELBO (the mean of log p(x,z) - log q(z|x))
    assert iw1.mean().item() == pytest.approx(elbo.mean().item(), rel=0.01)
    assert iw64.mean() > elbo.mean()  # the IW bound is tighter on average
    # chunking does not change the estimate's distribution: a whole k in one pass or in pieces
    pieces = iw_log_likelihood(model, x[:3], samples=64, rows=16)
    assert torch.isfinite(pieces).all() and pieces.shape == (3,)


def test_log_weight_equals_joint_minus_posterior_density():
    model = SeReVAE(tiny_config()).eval().double()
    x = torch.bernoulli(torch.full((6, 784), 0.2, dtype=torch.float64))
    trace = model(x)
    assert torch.allclose(trace.log_weight, trace.log_px + trace.log_ratio.sum(-1))
    # analytic KL and its one-sample estimate agree on average over many samples
    many = model(x, num_samples=4000)
    mc_kl = -many.log_ratio.sum(-1).view(6, 4000).mean(1)
    assert torch.allclose(mc_kl.mean(), many.kl.sum(-1).mean(), rtol=0.05)
    assert math.isfinite(trace.elbo.sum().item())
