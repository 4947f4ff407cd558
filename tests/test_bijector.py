import torch

from serecodec.bijector import affine_forward, affine_inverse, affine_log_det, affine_matrix
from serecodec.model import SeReVAE
from tests.conftest import tiny_config


def random_params(batch=64, n=10, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    shift = torch.randn(batch, n, generator=g, dtype=dtype)
    diag = torch.rand(batch, n, generator=g, dtype=dtype) * 2 + 0.05
    factor = torch.randn(batch, n, generator=g, dtype=dtype) * 1.5
    return shift, diag, factor


def test_forward_matches_dense_matrix():
    shift, diag, factor = random_params()
    eps = torch.randn_like(shift)
    dense = shift + (affine_matrix(diag, factor) @ eps.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(affine_forward(eps, shift, diag, factor), dense, rtol=1e-12, atol=1e-12)


def test_inverse_recovers_eps_and_matches_linalg_solve():
    shift, diag, factor = random_params()
    eps = torch.randn_like(shift)
    z = affine_forward(eps, shift, diag, factor)
    torch.testing.assert_close(affine_inverse(z, shift, diag, factor), eps, rtol=1e-10, atol=1e-10)
    solved = torch.linalg.solve(affine_matrix(diag, factor), (z - shift).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(affine_inverse(z, shift, diag, factor), solved, rtol=1e-10, atol=1e-10)


def test_log_det_matches_linalg_slogdet():
    _, diag, factor = random_params()
    sign, logabs = torch.linalg.slogdet(affine_matrix(diag, factor))
    assert (sign > 0).all()  # positive definite, hence invertible
    torch.testing.assert_close(affine_log_det(diag, factor), logabs, rtol=1e-12, atol=1e-12)


def test_model_bijectors_have_positive_diagonal_and_invert():
    model = SeReVAE(tiny_config()).double()
    z_in = torch.randn(32, 4, dtype=torch.float64) * 3
    for layer in range(model.config.num_layers):
        shift, diag, factor = model.layer_bijector(layer, None if layer == 0 else z_in, 32)
        assert (diag > 0).all()
        eps = torch.randn(32, 4, dtype=torch.float64)
        z = affine_forward(eps, shift, diag, factor)
        torch.testing.assert_close(affine_inverse(z, shift, diag, factor), eps, rtol=1e-10, atol=1e-10)
