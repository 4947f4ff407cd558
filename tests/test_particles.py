"""Importance-weighted bits-back (BB-IS): exact round trips, bit-exact weights, rate below the ELBO."""
import numpy as np
import pytest

from serecodec.methods import by_name
from serecodec.bitsback import initial_word_count
from serecodec.codec import Codec
from serecodec.errors import ArchiveError
from serecodec.importance import LOG_BITS, index_masses, log2_fixed


@pytest.fixture(scope="module")
def squares(digits):
    return digits[:40].reshape(-1, 28, 28)


def test_log2_table_is_close_to_log2():
    values = np.random.default_rng(0).integers(1, 1 << 40, 20000)
    assert np.abs(log2_fixed(values) / 2.0 ** LOG_BITS - np.log2(values)).max() < 1e-4
    assert log2_fixed(np.array([1, 2, 1 << 30])).tolist() == [0, 1 << LOG_BITS, 30 << LOG_BITS]


def test_index_masses_follow_the_weights():
    log_w = np.array([[0, -(1 << LOG_BITS), -(3 << LOG_BITS), 5 << LOG_BITS, -(200 << LOG_BITS)]])
    masses = index_masses(log_w)[0]
    assert masses[3] == 1 << 30 and masses[-1] == 0
    ratios = masses[:3] / masses[3]
    assert np.allclose(ratios, 2.0 ** np.array([-5, -6, -8]), rtol=3e-3)


@pytest.mark.parametrize("particles", [2, 5])
def test_round_trip_with_warm_start(squares, particles):
    codec = Codec(particles=particles)
    data = codec.compress(squares, method="bits-back")
    archive = codec.read(data)
    assert archive.fields_of("particles") == [particles] and sum(archive.fields_of("warm_images")) > 0
    assert np.array_equal(codec.decompress(data), squares)


def test_round_trip_any_size_and_unordered(squares):
    rng = np.random.default_rng(3)
    pages = [(rng.random((30, 45)) < 0.2).astype(np.uint8), squares[0]]
    codec = Codec(particles=3)
    decoded = codec.decompress(codec.compress(pages, method="bits-back"))
    assert all(np.array_equal(a, b) for a, b in zip(decoded, pages))
    data = codec.compress(squares[:12], method="bits-back", ordered=False)
    back = codec.decompress(data)
    assert sorted(map(bytes, back)) == sorted(map(bytes, squares[:12]))


def test_bit_exact_across_engines_and_threads(squares):
    reference = Codec(particles=4, warm_start=False).compress(squares, method="bits-back")
    assert Codec(particles=4, warm_start=False, engine="torch").compress(squares, method="bits-back") == reference
    assert Codec(particles=4, warm_start=False, threads=2).compress(squares, method="bits-back") == reference
    assert np.array_equal(Codec(engine="torch", threads=2).decompress(reference), squares)


def test_round_trip_with_small_and_large_batches(digits):
    """Batches of 1..3 and of dozens of images (the stack grows with the archive) decode exactly."""
    images = digits.reshape(-1, 28, 28)
    large = Codec(particles=2).compress(images, method="bits-back")
    small = Codec(particles=2, max_batch=3).compress(images, method="bits-back")
    batches = lambda data: sum(Codec().read(data).fields_of("batch_sizes"), [])  # noqa: E731
    assert max(batches(large)) > 3 >= max(batches(small))
    for data in (large, small):
        assert np.array_equal(Codec(engine="torch").decompress(data), images)


def test_net_rate_meets_the_iw_bound(digits):
    images = digits[:200]
    rates = {}
    for k in (1, 8):
        codec = Codec(particles=k, warm_start=False)
        archive = codec.read(codec.compress(images.reshape(-1, 28, 28), method="bits-back"))
        net = (archive.payload_bits - 32 * initial_word_count(codec.model, k)) * np.log(2) / len(images)
        bound = codec.model.expected_rate(images, particles=k)
        rates[k] = net
        assert net < 1.01 * bound["iw_nats"]
    assert bound["iw_nats"] < bound["neg_elbo_nats"]
    assert rates[8] < 0.99 * rates[1]


def test_particle_count_is_checked(squares):
    codec = Codec(particles=3)
    archive = codec.read(codec.compress(squares[:20], method="bits-back"))
    chunk = archive.chunks[0]
    for wrong in (1, 2, 4, 65):
        chunk.params = by_name("bits-back").params_bytes({**chunk.fields, "particles": wrong})
        with pytest.raises(ArchiveError):
            codec.decompress(archive.to_bytes())


def test_stream_with_particles(squares):
    codec = Codec(particles=3)
    stream = codec.stream()
    for image in squares[:25]:
        stream.append(image)
    data = stream.to_bytes()
    assert codec.read(data).chunks[0].fields["particles"] == 3
    assert np.array_equal(Codec().decompress(data), squares[:25])
