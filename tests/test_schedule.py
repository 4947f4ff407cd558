import math

import pytest

from serecodec.schedule import beta_at, beta_level, level_epochs, warmup_epochs


def test_paper_schedule_epoch_counts():
    assert level_epochs(10) == [2 ** n for n in range(10)]
    assert warmup_epochs(10) == 1023  # the paper's Table 4 rounds it to 1024


def test_beta_levels_are_geometric_from_zero_to_one():
    betas = [beta_level(n, 10) for n in range(11)]
    assert betas[0] == 0.0 and betas[10] == 1.0
    assert betas[1] == pytest.approx(0.1)
    ratios = [betas[n + 1] / betas[n] for n in range(1, 10)]
    assert ratios == pytest.approx([10 ** (1 / 9)] * 9)


def test_beta_at_follows_the_levels():
    assert beta_at(0.0, 10) == 0.0 and beta_at(0.999, 10) == 0.0
    assert beta_at(1.0, 10) == pytest.approx(0.1)    # level 1 spans epochs [1, 3)
    assert beta_at(2.9, 10) == pytest.approx(0.1)
    assert beta_at(3.0, 10) == pytest.approx(beta_level(2, 10))
    assert beta_at(1022.5, 10) == pytest.approx(beta_level(9, 10))
    assert beta_at(1023.0, 10) == 1.0 and beta_at(4000, 10) == 1.0


def test_scaled_down_schedule_keeps_its_shape():
    unit = 1 / 32
    assert warmup_epochs(10, unit) == pytest.approx(1023 / 32)
    assert beta_at(1023 / 32 - 1e-6, 10, unit) == pytest.approx(beta_level(9, 10))
    assert beta_at(1023 / 32, 10, unit) == 1.0
    assert beta_at(5.0, 0) == 1.0  # no warm-up at all
    assert math.isclose(beta_at(unit * 1.5, 10, unit), 0.1)


def test_learning_rate_cools_down_over_the_final_epochs():
    from serecodec.schedule import learning_rate_at
    assert learning_rate_at(100.0, 1e-3, 320, 0) == 1e-3             # paper: constant
    assert learning_rate_at(160.0, 1e-3, 320, 160) == 1e-3           # decay not started
    mid = learning_rate_at(240.0, 1e-3, 320, 160)
    assert mid == pytest.approx(0.5 * (1e-3 + 2e-5))                 # halfway down the cosine
    assert learning_rate_at(320.0, 1e-3, 320, 160) == pytest.approx(2e-5)
    rates = [learning_rate_at(e, 1e-3, 320, 160) for e in range(160, 321)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
