import torch
import torch.nn.functional as F

from serecodec.gaussian import kl_normal, log_normal, variance_from_output


def test_variance_map_is_softplus_of_elu_and_positive():
    raw = torch.linspace(-50, 50, 1001, dtype=torch.float64)
    var = variance_from_output(raw)
    assert (var > 0).all()
    torch.testing.assert_close(var, F.softplus(F.elu(raw)))
    torch.testing.assert_close(var[raw > 30], raw[raw > 30])  # large outputs pass through


def test_log_normal_matches_torch_distributions():
    loc, var = torch.randn(8, 5, dtype=torch.float64), torch.rand(8, 5, dtype=torch.float64) + 0.1
    x = torch.randn(8, 5, dtype=torch.float64)
    expected = torch.distributions.Normal(loc, var.sqrt()).log_prob(x).sum(-1)
    torch.testing.assert_close(log_normal(x, loc, var), expected)


def test_closed_form_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(3)
    loc_q, loc_p = torch.randn(4, 10, generator=g, dtype=torch.float64), torch.randn(4, 10, generator=g, dtype=torch.float64)
    var_q = torch.rand(4, 10, generator=g, dtype=torch.float64) + 0.3
    var_p = torch.rand(4, 10, generator=g, dtype=torch.float64) + 0.3
    samples = loc_q + var_q.sqrt() * torch.randn(200_000, 4, 10, generator=g, dtype=torch.float64)
    mc = (log_normal(samples, loc_q, var_q) - log_normal(samples, loc_p, var_p)).mean(0)
    exact = kl_normal(loc_q, var_q, loc_p, var_p)
    assert (exact > 0).all()
    torch.testing.assert_close(mc, exact, rtol=0.02, atol=0.02)
    torch.testing.assert_close(kl_normal(loc_q, var_q, loc_q, var_q), torch.zeros(4, dtype=torch.float64))
