"""The ResNet SeRe-VAE: float model, integer export of convolutions, exact coding."""
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from serecodec.codec import Codec
from serecodec.coding_model import CodingModel
from serecodec.export import export_coding_model
from serecodec.int_resnet import IntConvTranspose2
from serecodec.model import SeReVAE

from conftest import tiny_config


@pytest.fixture(scope="module")
def tiny_resnet(digits):
    """A tiny ResNet model trained for a few steps (real batch-norm statistics, moved weights)."""
    torch.manual_seed(0)
    model = SeReVAE(tiny_config(variant="resnet", evidence_features=12))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(digits[:256]).float()
    model.train()
    for step in range(6):
        batch = x[step * 32:(step + 1) * 32 + 32]
        loss = -model(batch).elbo.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def coding(tiny_resnet):
    return export_coding_model(tiny_resnet)


def test_forward_shapes_and_training_step(tiny_resnet, digits):
    x = torch.from_numpy(digits[:8]).float()
    trace = tiny_resnet(x)
    assert trace.elbo.shape == (8,) and torch.isfinite(trace.elbo).all()
    assert tiny_resnet.evidence(x).shape == (3, 8, 12)
    assert tiny_resnet.decode_logits(trace.z).shape == (8, 784)


def test_transposed_convolution_by_output_phases():
    """convT(3, stride 2, padding 1, output padding 1) equals its four-phase integer form."""
    from serecodec.coding_model import IntLinear
    torch.manual_seed(1)
    conv = torch.nn.ConvTranspose2d(3, 5, 3, stride=2, padding=1, output_padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-50, 50, conv.weight.shape).double())
        conv.bias.zero_()
    x = np.random.default_rng(0).integers(-100, 100, (2, 3, 6, 7))
    expected = conv.double()(torch.from_numpy(x).double()).detach().numpy()
    w = np.flip(conv.weight.detach().numpy(), (2, 3)).transpose(1, 0, 2, 3).reshape(1, 5, -1).transpose(0, 2, 1)
    layer = IntLinear(np.ascontiguousarray(w, dtype=np.float64), np.zeros((1, 1, 5), np.int64), 0)
    from serecodec.fixedpoint import NumpyEngine
    got = IntConvTranspose2(layer)(x, NumpyEngine())
    assert got.shape == expected.shape and np.array_equal(got, expected.astype(np.int64))


@pytest.mark.parametrize("groups, stride", [(1, 1), (1, 2), (3, 1)])
@pytest.mark.parametrize("largest", [1, 1 << 15])
def test_convolution_equals_the_integer_convolution(groups, stride, largest):
    """IntConv (patches unfolded from the float operand, float32 when the input's bound allows,
    else float64) gives torch's exact float64 convolution of the same integers, plus the bias."""
    from serecodec.coding_model import IntLinear
    from serecodec.fixedpoint import ACT_LIMIT, NumpyEngine
    from serecodec.int_resnet import IntConv
    rng = np.random.default_rng(groups * 10 + stride)
    weight = rng.integers(-60, 60, (6, 6 // groups, 3, 3))
    x = rng.integers(-largest, largest + 1, (3, 6, 9, 8))
    expected = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(weight).double(),
                                          stride=stride, padding=1, groups=groups).numpy().astype(np.int64)
    expected = np.clip(expected, -ACT_LIMIT, ACT_LIMIT)                     # (activations are clamped)
    w = weight.reshape(groups, 6 // groups, -1).transpose(0, 2, 1)            # (G, Cg·9, out_g)
    layer = IntLinear(np.ascontiguousarray(w, dtype=np.float64), np.zeros((groups, 1, 6 // groups), np.int64), 0)
    assert (layer.operand(x).dtype == np.float32) == (largest == 1)
    got = IntConv(layer, 3, stride=stride, padding=1)(x, NumpyEngine())
    assert got.shape == expected.shape and np.array_equal(got, expected)


def test_integer_model_tracks_the_float_model(tiny_resnet, coding, digits):
    model = CodingModel(coding)
    model.check()
    x = digits[:64]
    with torch.no_grad():
        evidence = tiny_resnet.evidence(torch.from_numpy(x).float()).numpy()
        float_elbo = -tiny_resnet(torch.from_numpy(x).float()).elbo.mean().item()
    assert np.abs(model.evidence(x) / 4096.0 - evidence).max() < 0.01 * max(1.0, np.abs(evidence).max())
    assert abs(model.expected_rate(x)["neg_elbo_nats"] - float_elbo) < 0.03 * float_elbo


def _outputs(model: CodingModel, x: np.ndarray) -> tuple:
    evidence = model.evidence(x)
    zs, z = [], None
    for layer in range(model.num_layers):
        p_loc, p_sigma = model.prior(layer, z, len(x))
        masses = model.bucket_masses(p_loc, p_sigma, *model.posterior(layer, evidence[layer], z))
        z = model.transform(layer, model.bucket_value(p_loc, p_sigma, masses.argmax(-1)), z)
        zs.append(z)
    return evidence, masses, model.pixel_probabilities(zs)


def test_conv_export_is_exact_across_batches_threads_and_engines(coding, digits):
    x = digits[:64].astype(np.int64)
    model = CodingModel(coding)
    reference = _outputs(model, x)
    singles = [_outputs(model, x[i:i + 1]) for i in (0, 17, 63)]
    for row, single in zip((0, 17, 63), singles):
        assert np.array_equal(single[0][:, 0], reference[0][:, row])
        assert np.array_equal(single[1][0], reference[1][row]) and np.array_equal(single[2][0], reference[2][row])
    with threadpool_limits(2, user_api="blas"):
        two_threads = _outputs(model, x)
    torch_engine = _outputs(CodingModel(coding, engine="torch"), x)
    for other in (two_threads, torch_engine):
        assert all(np.array_equal(a, b) for a, b in zip(reference, other))


def test_resnet_codes_digits_exactly(coding, digits):
    squares = digits[:40].reshape(-1, 28, 28)
    codec = Codec(CodingModel(coding))
    data = codec.compress(squares, method="bits-back")
    assert np.array_equal(codec.decompress(data), squares)
    assert np.array_equal(Codec(CodingModel(coding, engine="torch")).decompress(data), squares)


def test_resnet_needs_sides_divisible_by_four(tmp_path, digits):
    with pytest.raises(ValueError, match="divisible by 4"):
        SeReVAE(tiny_config(variant="resnet", image_pixels=30 * 30))
    from click.testing import CliRunner

    from serecodec.cli import main
    np.save(tmp_path / "d.npy", digits[:50].reshape(-1, 28, 28))
    done = CliRunner().invoke(main, ["train", str(tmp_path / "d.npy"), "-o", str(tmp_path / "m.pt"),
                                     "--preset", "resnet", "--tile", "30x30", "-q"])
    assert done.exit_code == 1 and "divisible by 4" in done.output and "Traceback" not in done.output


def test_shipped_resnet_model_round_trips_from_the_command_line(tmp_path, digits):
    from click.testing import CliRunner

    from serecodec.cli import main
    squares = digits[:30].reshape(-1, 28, 28)
    np.save(tmp_path / "x.npy", squares)
    run = lambda *args: CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)  # noqa: E731
    done = run("compress", tmp_path / "x.npy", "-o", tmp_path / "x.sere", "--model", "resnet", "--method", "bits-back",
               "-q")
    assert done.exit_code == 0, done.output
    done = run("decompress", tmp_path / "x.sere", "-o", tmp_path / "y.npy", "--npy", "--model", "resnet", "-q")
    assert done.exit_code == 0, done.output
    assert np.array_equal(np.load(tmp_path / "y.npy"), squares)
    done = run("decompress", tmp_path / "x.sere", "-o", tmp_path / "z.npy", "--npy", "-q")   # found by hash
    assert done.exit_code == 0 and np.array_equal(np.load(tmp_path / "z.npy"), squares)
