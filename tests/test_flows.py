"""The flow models (SeRe-MAF and the MAF baseline): the conditional MADE's mask offset and
autoregressive property, the log-density against a brute-force change of variables, the
residual base distribution, CIFAR batches, and a tiny end-to-end train, export and bpd."""
from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from serecodec.checkpoint import load_model
from serecodec.data import DataError
from serecodec.flow_data import load_cifar
from serecodec.flow_model import FlowConfig, FlowLikelihood, SeReMAF, build_flow, logit_transform
from serecodec.flow_training import FlowTrainConfig, evaluate, train_flow, warm_start_from

TINY = dict(image_pixels=6, num_layers=2, latent_dim=3, flows=2, made_hidden=16, evidence_hidden=16,
            evidence_features=4, latent_hidden=8, latent_features=4, gaussian_hidden=8, bijector_hidden=8,
            spline_bins=4, spline_couplings=1, base_features=5, base_hidden=8)


def _made_map(made, context):
    return lambda x: made(context).call_and_ladj(x)[0]


def test_conditioning_inputs_reach_every_hidden_unit_and_outputs_stay_autoregressive():
    torch.manual_seed(0)
    likelihood = FlowLikelihood(FlowConfig(**TINY), conditioned=True)
    made = likelihood.mades[0]
    first = made.hyper[0]                                # the first masked layer: inputs [x (6), context (3)]
    assert first.mask[:, 6:].all()                       # the mask offset: every hidden unit sees z
    order = made.order
    x, z = torch.randn(6, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    made = made.double()
    jac = torch.autograd.functional.jacobian(_made_map(made, z), x)
    later = order[None, :] > order[:, None]               # input j after output i in the MADE's order
    assert (jac[later] == 0).all()
    assert (jac.diagonal() != 0).all()
    jac_z = torch.autograd.functional.jacobian(lambda c: made(c).call_and_ladj(x)[0], z)
    assert (jac_z.abs().sum(-1) > 0).all()                # every output depends on the context


def test_log_density_matches_a_brute_force_change_of_variables():
    torch.manual_seed(1)
    likelihood = FlowLikelihood(FlowConfig(**TINY), conditioned=True).double().eval()
    for norm in likelihood.norms:                         # non-trivial batch-norm statistics
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
        with torch.no_grad():
            norm.log_gamma.normal_(0, 0.3)
    with torch.no_grad():
        for r in likelihood.base_residuals:
            r.weights[-1].normal_(0, 0.1)
    zs = [torch.randn(1, 3, dtype=torch.float64) for _ in range(2)]
    y = torch.randn(1, 6, dtype=torch.float64)

    def to_base(v):
        u = v
        for i, made in enumerate(likelihood.mades):
            u = made(zs[i % 2][0]).call_and_ladj(u)[0]
            if i < len(likelihood.norms):
                u = likelihood.norms[i](u[None])[0][0]
        return u

    jac = torch.autograd.functional.jacobian(to_base, y[0])
    loc, raw, factor = likelihood.base_parameters(zs, 1)
    from serecodec.gaussian import variance_from_output
    cov = torch.diag(variance_from_output(raw[0])) + factor[0][:, None] * factor[0][None, :]
    base = torch.distributions.MultivariateNormal(loc[0], covariance_matrix=cov)
    brute = base.log_prob(to_base(y[0])) + torch.linalg.slogdet(jac)[1]
    assert torch.allclose(likelihood.log_prob(y, zs)[0], brute, atol=1e-8)


def test_the_base_distribution_is_refined_layer_by_layer():
    torch.manual_seed(2)
    likelihood = FlowLikelihood(FlowConfig(**TINY), conditioned=True)
    zs = [torch.randn(4, 3) for _ in range(2)]
    start = torch.cat([likelihood.base_loc, likelihood.base_raw_diag, likelihood.base_factor])
    assert torch.equal(torch.cat(likelihood.base_parameters(zs, 4), -1), start.expand(4, -1))   # residuals start at 0
    with torch.no_grad():
        likelihood.base_residuals[1].weights[-1].normal_()
    refined = torch.cat(likelihood.base_parameters(zs, 4), -1)
    assert not torch.allclose(refined[0], refined[1])      # γ now depends on each image's z
    other = torch.cat(likelihood.base_parameters([zs[0], torch.randn(4, 3)], 4), -1)
    assert not torch.allclose(refined, other)


def test_logit_transform_and_its_log_determinant():
    x = torch.rand(3, 5, dtype=torch.float64)
    y, log_det = logit_transform(x, 0.05)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: logit_transform(v[None], 0.05)[0][0], x[i])
        assert math.isclose(float(torch.linalg.slogdet(jac)[1]), float(log_det[i]), rel_tol=1e-9)


def test_cifar_batches_are_read_and_hostile_pickles_refused(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("data_batch_1", "test_batch"):
        blob = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        (tmp_path / name).write_bytes(pickle.dumps(blob))
    train, test = load_cifar(str(tmp_path))
    assert train.shape == (4, 3072) and test.dtype == np.uint8

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="not a CIFAR-10 python batch"):
        load_cifar(str(tmp_path))


@pytest.mark.parametrize("variational", [True, False])
def test_a_tiny_flow_trains_resumes_exports_and_reports(tmp_path, digits, variational):
    """Grey levels of real digits (the fixture's 0/1 scaled to 0..255, 14x14 crops would change the
    model; the tiny model reads 784 pixels): the loss falls, a run resumes, the export loads and
    ``serecodec bpd`` reports the flow's figures."""
    levels = (digits[:192] * 255).astype(np.uint8)
    config = FlowConfig(**{**TINY, "image_pixels": 784, "made_hidden": 32}, variational=variational)
    cfg = FlowTrainConfig(epochs=3, batch_size=32, recon_fraction=0.34, warmup_fraction=0.33, threads=1)
    torch.manual_seed(0)
    before = evaluate(build_flow(config), levels[:64])["neg_elbo_nats"]
    first = train_flow(config, cfg, levels, levels[:64], tmp_path / "run")
    assert first["epoch"] == 3 and first["valid_neg_elbo"] < before
    cfg.epochs = 4
    assert train_flow(config, cfg, levels, levels[:64], tmp_path / "run")["epoch"] == 4       # resumed
    from serecodec.cli import main
    out = CliRunner().invoke(main, ["export", str(tmp_path / "run" / "checkpoint.pt"), "-o", str(tmp_path / "f.pt")])
    assert out.exit_code == 0, out.output
    model = load_model(tmp_path / "f.pt")
    assert isinstance(model, SeReMAF) == variational
    figures = evaluate(model, levels[:32], iw_samples=4 if variational else 1)
    assert np.isfinite(figures["log_likelihood"]) and figures["bits_per_dim"] > 0
    if variational:
        assert figures["log_likelihood_bound"] == "IW-4"
        assert figures["log_likelihood"] >= -figures["neg_elbo_nats"] - 5.0      # IW-k is (about) above the ELBO
    idx = tmp_path / "idx"                                 # an IDX directory, as Debian's Fashion-MNIST ships
    idx.mkdir()
    for name, images in (("train-images-idx3-ubyte", np.resize(levels, (10_010, 784))),
                         ("t10k-images-idx3-ubyte", levels[:40])):
        (idx / name).write_bytes(bytes([0, 0, 8, 3]) + b"".join(int(v).to_bytes(4, "big") for v in
                                                               (len(images), 28, 28)) + images.tobytes())
    out = CliRunner().invoke(main, ["bpd", "--model", str(tmp_path / "f.pt"), "--data-dir", str(idx), "--limit", "16",
                                    "--iw-samples", "4", "--iw-limit", "8", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["images"] == 16 and np.isfinite(report["log_likelihood"]) and report["bits_per_dim"] > 0
    assert report["log_likelihood_bound"] == ("IW-4" if variational else "exact")
    if variational:
        assert report["iw_images"] == 8
        out = CliRunner().invoke(main, ["bpd", "--model", str(tmp_path / "f.pt"), "--data-dir", str(idx), "--limit",
                                        "16", "--iw-samples", "4", "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["iw_images"] == 16      # by default the IW bound is over the --limit images


def test_a_continuation_starts_from_trained_weights_and_adds_up_its_budget(tmp_path, digits):
    """``train_flow(init=...)``: the new run starts from the exported weights (not from scratch), a
    model of another config is refused, and the continuation's export records both runs' budgets."""
    from serecodec.checkpoint import export_weights
    levels = (digits[:96] * 255).astype(np.uint8)
    config = FlowConfig(**{**TINY, "image_pixels": 784, "made_hidden": 32}, variational=True)
    cfg = FlowTrainConfig(epochs=1, batch_size=32, recon_fraction=0.0, warmup_fraction=0.0, warmup_levels=0,
                          threads=1)
    train_flow(config, cfg, levels, levels[:32], tmp_path / "first")
    first = export_weights(tmp_path / "first" / "checkpoint.pt", tmp_path / "first.pt")
    fresh = build_flow(config)
    origin = warm_start_from(fresh, first)
    trained = load_model(first)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in trained.state_dict().items())
    assert origin["epoch"] == 1 and origin["train_cpu_minutes"] == trained.meta["train_cpu_minutes"]
    with pytest.raises(ValueError, match="not a flow model of this config"):
        warm_start_from(build_flow(FlowConfig(**{**TINY, "image_pixels": 784, "made_hidden": 16})), first)
    cfg.epochs = 2
    record = train_flow(config, cfg, levels, levels[:32], tmp_path / "more", init=first)
    assert record["epoch"] == 2
    blob = torch.load(tmp_path / "more" / "checkpoint.pt", weights_only=False)
    assert blob["config"]["init"]["weights"] == str(first)
    assert train_flow(config, cfg, levels, levels[:32], tmp_path / "more", init=first) == {}   # resumed, done
    more = load_model(export_weights(tmp_path / "more" / "checkpoint.pt", tmp_path / "more.pt"))
    assert more.meta["epoch"] == 3
    own = json.loads((tmp_path / "more" / "log.jsonl").read_text().splitlines()[-1])["cpu_minutes"]
    assert more.meta["train_cpu_minutes"] == round(trained.meta["train_cpu_minutes"] + own, 1)
