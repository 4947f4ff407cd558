"""The coder on real digits with the shipped coding model: exact round trips, integrity, determinism."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serecodec.container import Archive, Chunk, parse
from serecodec.container.wire import Reader, run_lengths, varints
from serecodec.errors import ArchiveError
from serecodec.bitsback import initial_word_count
from serecodec.codec import Codec
from serecodec.export import export_coding_model
from serecodec.coding_model import (CodingModel, CodingModelError, content_hash,
                                    load_coding_model, save_coding_model)
from serecodec.model import SeReVAE
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def codec():
    return Codec()


def test_fixture_round_trip_is_bit_exact_and_near_the_elbo(codec, squares):
    data = codec.compress(squares)
    assert codec.read(data).method == "bits-back"            # auto keeps bits-back for 300 digits
    decoded = codec.decompress(data)
    assert decoded.dtype == np.uint8 and decoded.shape == squares.shape
    assert np.array_equal(decoded, squares)               # every pixel of every image
    archive = codec.read(data)
    net_nats = (archive.payload_bits - 32 * initial_word_count(codec.model)) * np.log(2) / len(squares)
    expected = codec.model.expected_rate(squares.reshape(len(squares), -1))["neg_elbo_nats"]
    assert net_nats < 1.02 * expected, (net_nats, expected)
    assert 8 * len(data) / squares.size < 0.25            # far below 1 bit per pixel


SPECIAL = {
    "all0": np.zeros((28, 28), np.uint8),
    "all1": np.ones((28, 28), np.uint8),
    "checker": (np.indices((28, 28)).sum(0) % 2).astype(np.uint8),
    "noise": np.random.default_rng(1).integers(0, 2, (28, 28)).astype(np.uint8),
}


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_unusual_images_round_trip(codec, name):
    images = np.stack([SPECIAL[name]] * 3)
    assert np.array_equal(codec.decompress(codec.compress(images, method="bits-back")), images)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 4).flatmap(lambda n: st.lists(
    st.lists(st.booleans(), min_size=784, max_size=784), min_size=n, max_size=n)))
def test_generated_binary_images_round_trip(codec, pixel_lists):
    images = np.array(pixel_lists, dtype=np.uint8).reshape(-1, 28, 28)
    for method in ("bits-back", "deflate"):
        assert np.array_equal(codec.decompress(codec.compress(images, method=method)), images)


def test_many_small_batches_chain_on_one_stack(squares):
    codec = Codec(max_batch=3)
    data = codec.compress(squares[:60], method="bits-back")
    assert len(codec.read(data).chunks[0].fields["batch_sizes"]) >= 20
    assert np.array_equal(codec.decompress(data), squares[:60])


def test_names_survive(codec, squares):
    names = [f"dir/digit {i}" for i in range(5)]
    data = codec.compress(squares[:5], names=names)
    assert codec.read(data).names == names


def test_every_flipped_payload_byte_is_detected(codec, squares):
    data = codec.compress(squares[:20], method="bits-back")
    archive = codec.read(data)
    payload_start = len(data) - 8 - len(archive.chunks[0].payload)
    rng = np.random.default_rng(0)
    for pos in rng.choice(np.arange(payload_start, len(data) - 8), size=12, replace=False):
        broken = bytearray(data)
        broken[pos] ^= 0x10
        with pytest.raises(ArchiveError, match="corrupted"):
            codec.decompress(bytes(broken))
        with pytest.raises(ArchiveError, match="corrupted"):     # also with the archive checksum re-sealed
            codec.decompress(reseal(bytes(broken)))


def reseal(data: bytes) -> bytes:
    """An archive with its checksums over stored bytes recomputed: what a hostile file would carry."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from fuzz import reseal as fuzz_reseal
    return fuzz_reseal(data)


def test_header_damage_and_truncation_are_detected(codec, squares):
    data = codec.compress(squares[:10], method="bits-back")
    with pytest.raises(ArchiveError, match="bad magic"):
        codec.decompress(b"XXXX" + data[4:])
    with pytest.raises(ArchiveError, match="version 9"):
        codec.decompress(data[:4] + b"\x09" + data[5:])
    with pytest.raises(ArchiveError, match="checksum"):
        codec.decompress(data[:10] + bytes(6) + data[16:])
    at = data.index(bytes.fromhex(codec.model.hash)[:16])          # the chunk names its coding model
    with pytest.raises(ArchiveError, match="checksum"):
        codec.decompress(data[:at] + bytes(16) + data[at + 16:])
    with pytest.raises(ArchiveError, match="coding model"):
        codec.decompress(reseal(data[:at] + bytes(16) + data[at + 16:]))
    for cut in (3, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(ArchiveError, match="truncated|checksum"):
            codec.decompress(data[:cut])
    with pytest.raises(ArchiveError, match="after the last chunk"):
        codec.decompress(data + b"\0")
    with pytest.raises(ArchiveError, match="after the last chunk"):
        codec.decompress(reseal(data[:-4] + b"\0" + data[-4:]))


def test_names_sizes_and_formats_are_covered_by_the_checksum(codec, squares):
    data = codec.compress(squares[:3], names=["digit0025", "digit0015", "x"], formats=["png", "pbm", "png"],
                          method="adaptive")
    raw = bytes(data)
    position = raw.index(b"png") if b"png" in raw else None
    assert position is None                       # names are deflated, formats are codes
    for pos in range(5, len(raw) - 8):
        broken = bytearray(raw)
        broken[pos] ^= 0x01
        for candidate in (bytes(broken), reseal(bytes(broken))):
            try:
                images = codec.decompress(candidate)
                archive = codec.read(candidate)
            except ArchiveError:
                continue
            assert archive.names == ["digit0025", "digit0015", "x"] and archive.formats == ["png", "pbm", "png"]
            assert np.array_equal(images, squares[:3])
@pytest.fixture(scope="module")
def other_model():
    torch.manual_seed(5)
    return CodingModel(export_coding_model(SeReVAE(tiny_config(num_layers=2)).eval()))


def test_archive_from_another_model_is_refused(codec, squares, other_model):
    data = Codec(other_model).compress(squares[:4], method="bits-back")
    with pytest.raises(ArchiveError, match="needs coding model"):
        codec.decompress(data)
    assert np.array_equal(Codec(other_model).decompress(data), squares[:4])  # an untrained model is still lossless


def test_probabilities_do_not_depend_on_batch_size_threads_or_engine(codec, squares):
    x = squares[:64].reshape(64, -1).astype(np.int64)

    def trace(model, xs):
        ev = model.evidence(xs)
        out, z = [], None
        for layer in range(model.num_layers):
            p = model.prior(layer, z, len(xs))
            q = model.posterior(layer, ev[layer], z)
            masses = model.bucket_masses(*p, *q)
            out.append(masses)
            z = model.transform(layer, model.bucket_value(*p, masses.argmax(-1)), z)
            out.append(z)
        return out

    batched = trace(codec.model, x)
    singles = [trace(codec.model, x[i:i + 1]) for i in range(0, 64, 9)]
    for j, single in zip(range(0, 64, 9), singles):
        for a, b in zip(batched, single):
            assert np.array_equal(a[j:j + 1], b)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            for a, b in zip(batched, trace(codec.model.with_engine("torch"), x)):
                assert np.array_equal(a, b)
    finally:
        torch.set_num_threads(threads)


def test_encode_with_numpy_decode_with_torch(squares):
    data = Codec(engine="numpy").compress(squares[:50], method="bits-back")
    assert np.array_equal(Codec(engine="torch").decompress(data), squares[:50])
    assert Codec(engine="torch").compress(squares[:50], method="bits-back") == data


def test_coding_model_file_round_trip_and_hash(tmp_path, other_model):
    path = tmp_path / "m.coding.npz"
    digest = save_coding_model(other_model.arrays, path)
    loaded = load_coding_model(path)
    assert loaded.hash == digest == other_model.hash
    changed = dict(other_model.arrays)
    changed["quantile"] = changed["quantile"] + 1
    assert content_hash(changed) != digest
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    with pytest.raises(CodingModelError, match="junk.npz"):
        load_coding_model(tmp_path / "junk.npz")
    with pytest.raises(CodingModelError, match="no such"):
        load_coding_model(tmp_path / "missing.npz")


def test_archive_header_fields_round_trip():
    chunks = [Chunk(3, 2, params=b"xyz", payload=bytes(range(20)), pixel_crc=1234),
              Chunk(2, 1, first=2, params=b"\1", payload=b"abc", pixel_crc=99)]
    archive = Archive([(28, 28, 2), (5, 7, 1)], chunks, names=["a", "b", "c"], formats=["png", "npy", "tiff-g4"])
    again = parse(archive.to_bytes())
    assert again.names == ["a", "b", "c"] and again.formats == archive.formats and again.version == 4
    assert again.shapes == [(28, 28), (28, 28), (5, 7)] and again.count == 3
    assert [(c.code, c.count, c.first, c.params, c.payload, c.damage) for c in again.chunks] == \
        [(3, 2, 0, b"xyz", bytes(range(20)), ""), (2, 1, 2, b"\1", b"abc", "")]
    assert [c.content_crc for c in again.chunks] == [c.content_crc for c in chunks]
    assert again.meta_raw == archive.meta_bytes()


def test_varints_and_runs_round_trip():
    values = [0, 1, 127, 128, 300, 2 ** 32 + 5, 2 ** 60]
    reader = Reader(varints(*values))
    assert [reader.varint("x") for _ in values] == values and not reader.remaining()
    assert len(varints(127)) == 1 and len(varints(128)) == 2
    assert run_lengths([256, 256, 256, 17, 1, 1]) == [[256, 3], [17, 1], [1, 2]]


@pytest.mark.parametrize("version", [1, 2])
def test_versions_1_and_2_still_decode(squares, version):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from fuzz import old_version           # the one writer of the old layouts
    codec = Codec(warm_start=False)          # formats 1-2 knew only initial words
    for method in ("bits-back", "deflate"):
        data = codec.compress(squares[:12], names=[f"{i}.png" for i in range(12)], method=method)
        current = codec.read(data)
        old = old_version(data, codec, version)
        assert codec.read(old).version == version and codec.read(old).names == current.names
        assert np.array_equal(codec.decompress(old), squares[:12])
        with pytest.raises(ArchiveError, match="corrupted"):
            codec.decompress(old_version(data, codec, version, crc_flip=1))


def test_small_archives_have_short_headers(codec, squares):
    for method, header in (("deflate", 29), ("adaptive", 30), ("context", 30)):
        data = codec.compress(squares[:1], method=method)
        archive = codec.read(data)
        assert archive.method == method and archive.fields_of("model_hash") == []
        assert len(data) - len(archive.chunks[0].payload) == header
        assert np.array_equal(codec.decompress(data), squares[:1])


def test_quantization_costs_almost_nothing(codec, digits):
    """The integer coding model's -ELBO stays within 1% of the float model's (both averaged over seeds)."""
    from serecodec.checkpoint import load_model
    from serecodec.evaluate import elbo_per_image

    float_model = load_model(None)
    x = torch.as_tensor(digits, dtype=torch.float32)
    float_rate = np.mean([-elbo_per_image(float_model, x, seed=s)[0].mean().item() for s in range(4)])
    coding_rate = np.mean([codec.model.expected_rate(digits, seed=s)["neg_elbo_nats"] for s in range(4)])
    assert abs(coding_rate - float_rate) < 0.01 * float_rate, (coding_rate, float_rate)


def test_float32_shortcut_gives_the_exact_float64_integers(codec, digits):
    first = codec.model.nets["evidence"].layers[0]
    assert first.weight32 is not None            # the 0/1 image layer qualifies for float32
    x = digits.astype(np.int64)
    engine = codec.model.engine
    assert first.operand(x).dtype == np.float32
    fast = engine.matmul(first.operand(x), first.weight, first.weight32)
    exact = engine.matmul(x.astype(np.float64), first.weight)
    assert np.array_equal(fast, exact)
    hidden = codec.model.nets["evidence"].layers[1]
    big = np.full((hidden.weight.shape[0], 3, hidden.weight.shape[1]), 1 << 20, dtype=np.int64)  # float32 would round
    assert np.array_equal(engine.matmul(hidden.operand(big), hidden.weight, hidden.weight32),
                          engine.matmul(big.astype(np.float64), hidden.weight))


def test_stream_appends_one_image_at_a_time(codec, squares):
    stream = codec.stream()
    sizes = []
    for image in squares[:30]:
        stream.append(image)
        snapshot = stream.to_bytes()
        sizes.append(len(snapshot))
        assert np.array_equal(codec.decompress(snapshot), squares[:stream.count])   # complete at any point
    assert stream.count == 30 and sizes == sorted(sizes)
    assert stream.to_bytes() == stream.to_bytes()           # snapshots do not disturb the stream
    stream.append(squares[30:40])                           # batches mix with single images
    assert np.array_equal(codec.decompress(stream.to_bytes()), squares[:40])


def test_small_archives_choose_a_smaller_method_and_say_so(codec, squares, other_model):
    one = codec.compress(squares[:1])
    assert codec.read(one).method == "context"
    assert len(one) < len(codec.compress(squares[:1], method="bits-back"))
    assert np.array_equal(codec.decompress(one), squares[:1])
    assert np.array_equal(Codec(other_model).decompress(one), squares[:1])   # no coding model needed
    broken = bytearray(one)
    broken[-3] ^= 0x01
    with pytest.raises(ArchiveError, match="corrupted"):
        codec.decompress(bytes(broken))
    checkers = (np.indices((28, 28)).sum(0) % 2).astype(np.uint8)[None]    # nothing like a digit
    odd = codec.compress(checkers)
    assert codec.read(odd).method == "deflate" and np.array_equal(codec.decompress(odd), checkers)
    many = codec.compress(squares)
    assert codec.read(many).method == "bits-back"
    assert len(many) <= len(codec.compress(squares, method="deflate"))


def test_bucket_masses_equal_the_edge_by_edge_formula(codec):
    """The distributed product in ``bucket_masses`` gives exactly the integers of the plain
    formula (edges, then their distance to the posterior mean, then the scaled CDF), over the
    whole range the networks and tables can produce."""
    from serecodec.coding_model import CDF_BITS, SIGMA_BITS
    from serecodec.fixedpoint import ACT_LIMIT, round_shift
    model = codec.model
    rng = np.random.default_rng(5)
    shape = (64, model.latent_dim)
    sigma_values, inv_values = model.tables["sigma"].values, model.tables["inv_sigma"].values
    for _ in range(20):
        prior_loc, post_loc = rng.integers(-ACT_LIMIT, ACT_LIMIT + 1, (2,) + shape)
        prior_sigma = rng.integers(sigma_values.min(), sigma_values.max() + 1, shape)
        post_inv = rng.integers(inv_values.min(), inv_values.max() + 1, shape)
        near = rng.random(shape) < 0.5                       # many posteriors near the prior, as in coding
        post_loc = np.where(near, prior_loc + rng.integers(-4096, 4097, shape), post_loc)
        edges = (prior_loc[..., None] << SIGMA_BITS) + prior_sigma[..., None] * model.quantile
        t = round_shift((edges - (post_loc[..., None] << SIGMA_BITS)) * post_inv[..., None], 2 * SIGMA_BITS)
        cdf = model.tables["phi"](t)
        ends = cdf.shape[:-1] + (1,)
        expected = np.diff(np.concatenate([np.zeros(ends, np.int64), cdf, np.full(ends, 1 << CDF_BITS)], -1), axis=-1)
        masses = model.bucket_masses(prior_loc, prior_sigma, post_loc, post_inv)
        assert masses.dtype == np.int64 and np.array_equal(masses, expected)
        assert (masses.sum(-1) == 1 << CDF_BITS).all()


def test_table_lookups_equal_clamped_linear_interpolation(codec):
    """Every table of the coding model, at every input near its range and at random far outside
    it: f(lo + k 2**s + r) = v_k + round(r (v_{k+1} − v_k) / 2**s), clamped at both ends."""
    from serecodec.fixedpoint import round_shift
    rng = np.random.default_rng(2)
    for name, table in codec.model.tables.items():
        v = np.concatenate([np.arange(table.lo - 3, table.hi + 4), rng.integers(-2**40, 2**40, 1000)])
        w = np.minimum(np.maximum(v, table.lo), table.hi) - table.lo
        k, r = w >> table.step_bits, w & ((1 << table.step_bits) - 1)
        nxt = table.values[np.minimum(k + 1, len(table.values) - 1)]
        expected = table.values[k] + round_shift((nxt - table.values[k]) * r, table.step_bits)
        assert np.array_equal(table(v), expected), name
        assert np.array_equal(table(v[:1000].reshape(10, 100)), expected[:1000].reshape(10, 100)), name
