"""Every payload method through one round-trip harness; format 4's chunks (salvage, streaming,
independence); archives of formats 1-3 written by the release before format 4 decode as they did."""
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from serecodec.codec import Codec, plan_chunks
from serecodec.errors import ArchiveError, InputError
from serecodec.methods import METHOD_NAMES, REGISTRY, auto_order, by_code, by_name
from serecodec.parallel import fork_available
from serecodec.synthetic import text_page

LEGACY = Path(__file__).resolve().parent / "data" / "legacy"


@pytest.fixture(scope="module")
def codec():
    return Codec()


def _cases(squares):
    rng = np.random.default_rng(3)
    page = text_page(rng, size=(160, 96), font_size=12)
    return {
        "one pixel": [np.ones((1, 1), np.uint8)],
        "one digit": squares[:1],
        "digits": squares[:40],
        "thin": [np.zeros((3, 57), np.uint8), rng.integers(0, 2, (57, 3)).astype(np.uint8)],
        "mixed": [squares[0], np.ones((1, 1), np.uint8), rng.integers(0, 2, (27, 29)).astype(np.uint8),
                  squares[1][:20, :11]],
        "page": [page],
    }


def _same(decoded, images) -> bool:
    return len(decoded) == len(images) and all(np.array_equal(a, b) for a, b in zip(decoded, images))


@pytest.mark.parametrize("method", METHOD_NAMES + ("auto",))
def test_every_method_round_trips_every_shape(codec, squares, method):
    for label, images in _cases(squares).items():
        refusal = None if method == "auto" else by_name(method).refuses(
            images if isinstance(images, np.ndarray) else images, codec.models)
        if refusal is not None and not (isinstance(images, np.ndarray) and images.shape[1:] == (28, 28)):
            with pytest.raises(InputError):
                codec.compress(images, method=method)
            continue
        names = [f"{label}/{i}" for i in range(len(images))]
        data = codec.compress(images, method=method, names=names, formats=["pbm"] * len(images))
        archive = codec.read(data)
        assert archive.names == names and archive.formats == ["pbm"] * len(images)
        assert method == "auto" or archive.method == method
        assert _same(codec.decompress(data), images), (method, label)


def test_registry_codes_are_unique_and_stable():
    assert {m.name: m.code for m in REGISTRY.values()} == {"adaptive": 2, "deflate": 0, "context": 1,
                                                           "bits-back": 3, "lzma": 4, "pages": 5}
    for method in REGISTRY.values():
        assert by_code(method.code) is method
    with pytest.raises(ArchiveError):
        by_code(200)


def test_auto_tries_the_likely_winner_first_and_skips_the_page_model_on_digits(squares):
    """auto's order: the page model first on a page (then the adaptive model, whose template it
    contains, is not coded), last on small images, where the sample it would choose its state by
    says 300 digits are not worth coding with it (bits-back wins)."""
    page = text_page(np.random.default_rng(0), size=(300, 400))
    assert auto_order([page])[0] == "pages" and auto_order(list(squares))[-1] == "pages"
    assert auto_order(list(squares))[-2] == "bits-back" and set(auto_order([page])) == set(auto_order(list(squares)))
    report = []
    Codec().compress(list(squares), report=report)
    tried = report[0].candidates
    assert report[0].method == "bits-back" and tried["pages"] == "not tried: its estimate cannot win"
    assert by_name("pages").worth_trying(list(squares), Codec().models, None)      # nothing to beat: tried
    report = []
    Codec().compress([page], report=report)                # a page: the adaptive model is not tried after it
    assert report[0].method == "pages" and report[0].candidates["adaptive"] == "not tried: its estimate cannot win"


def test_bits_back_estimated_ahead_decides_as_inline(digits):
    """On pages auto works bits-back's estimate out beside the page model's coding; it decides as
    the inline estimate does, for sizes to beat on either side of it, and a page of digits on
    bits-back's tile grid still goes to bits-back."""
    mosaic = digits[:300].reshape(15, 20, 28, 28).transpose(0, 2, 1, 3).reshape(15 * 28, 20 * 28)
    page = text_page(np.random.default_rng(0), size=(300, 400))
    bits_back, models = by_name("bits-back"), Codec().models
    assert bits_back.estimate_ahead([mosaic]) and not bits_back.estimate_ahead(list(digits[:10].reshape(-1, 28, 28)))
    for image in (mosaic, page):
        ahead = models.estimator().submit(bits_back.estimate, [image], models)
        floor, guess = ahead.result()
        assert 0 < floor < guess < np.inf
        for best in (floor / 2, floor, (floor + guess) / 2, guess, 2 * guess):
            assert bits_back.worth_trying([image], models, best, ahead) == bits_back.worth_trying([image], models, best)
    report = []
    codec = Codec()
    assert np.array_equal(codec.decompress(codec.compress([mosaic], report=report))[0], mosaic)
    assert report[0].method == "bits-back" and isinstance(report[0].candidates["pages"], int)


def test_chunks_are_planned_by_pixels():
    assert plan_chunks([(28, 28)] * 10, 4 * 784) == [(0, 4), (4, 8), (8, 10)]
    assert plan_chunks([(1000, 1000), (1, 1), (28, 28)], 4 * 784) == [(0, 1), (1, 3)]
    assert plan_chunks([(2, 2)], 1) == [(0, 1)]


def test_each_chunk_keeps_its_own_method(squares):
    codec = Codec(chunk_pixels=20 * 784)
    report = []
    images = list(squares[:40]) + [np.zeros((28, 28), np.uint8)] * 30
    data = codec.compress(images, report=report)
    archive = codec.read(data)
    assert [c.count for c in archive.chunks] == [20, 20, 20, 10] == [r.count for r in report]
    assert [c.method for c in archive.chunks] == [r.method for r in report]
    assert all(r.bytes == min(v for v in r.candidates.values() if isinstance(v, int)) for r in report)
    assert _same(codec.decompress(data), images)


def test_a_flipped_byte_loses_one_chunk_and_salvage_restores_the_rest(squares):
    codec = Codec(chunk_pixels=25 * 784)
    data = codec.compress(squares[:100], method="bits-back")
    archive = codec.read(data)
    assert len(archive.chunks) == 4
    broken = bytearray(data)
    broken[len(data) // 2] ^= 0x04
    with pytest.raises(ArchiveError, match=r"chunk \d of 4 \(images \d+-\d+\)"):
        codec.decompress(bytes(broken))
    rescued = codec.salvage(bytes(broken))
    assert len(rescued.lost) == 1 and rescued.restored == 75
    number, span, reason = rescued.lost[0]
    assert all(rescued.images[i] is None for i in span) and "checksum" in reason
    for i, image in enumerate(rescued.images):
        assert image is None or np.array_equal(image, squares[i])


def test_truncated_archive_salvages_its_whole_chunks(squares):
    codec = Codec(chunk_pixels=10 * 784)
    data = codec.compress(squares[:30], method="adaptive")
    rescued = codec.salvage(data[:len(data) - 5])
    assert rescued.restored == 20 and [n for n, _, _ in rescued.lost] == [3]


def test_streaming_decode_reads_one_chunk_at_a_time(squares, tmp_path):
    codec = Codec(chunk_pixels=10 * 784)
    data = codec.compress(squares[:45], method="bits-back")
    path = tmp_path / "a.sere"
    path.write_bytes(data)

    class Counting(io.BytesIO):
        most = 0

        def read(self, size=-1):
            assert size != -1, "a streaming reader never reads to the end at once"
            part = super().read(size)
            Counting.most = max(Counting.most, len(part))
            return part

    got = list(codec.iter_decompress(Counting(data)))
    assert [len(g) for g in got] == [10, 10, 10, 10, 5]
    assert Counting.most < len(data) // 3                    # never the whole archive
    assert np.array_equal(np.concatenate(got), squares[:45])
    assert np.array_equal(np.concatenate(list(codec.iter_decompress(str(path)))), squares[:45])
    broken = bytearray(data)
    broken[-20] ^= 1
    with pytest.raises(ArchiveError):
        list(codec.iter_decompress(io.BytesIO(bytes(broken))))
    with pytest.raises(InputError, match="missing.sere: cannot read"):
        list(codec.iter_decompress(tmp_path / "missing.sere"))


def test_chunks_are_independent_of_each_other(squares):
    """A chunk's bytes depend only on its images: the same images coded alone give the same body."""
    codec = Codec(chunk_pixels=10 * 784)
    both = codec.read(codec.compress(squares[:20], method="bits-back"))
    alone = codec.read(codec.compress(squares[10:20], method="bits-back"))
    assert both.chunks[1].payload == alone.chunks[0].payload and both.chunks[1].params == alone.chunks[0].params


def test_archives_written_before_format_4_decode_as_they_did(codec):
    """tests/data/legacy: format 1-3 archives of every method written by the release before
    format 4, and what that release decoded them to (pixels, names, formats)."""
    meta = json.loads((LEGACY / "expected.json").read_text())
    pixels = np.load(LEGACY / "expected.npz")
    assert {m["version"] for m in meta.values()} == {1, 2, 3}
    assert {m["method"] for m in meta.values()} == set(METHOD_NAMES) - {"lzma", "pages"}     # lzma and pages came with format 4
    for kind, m in meta.items():
        data = (LEGACY / f"{kind}.sere").read_bytes()
        archive = codec.read(data)
        assert archive.version == m["version"] and archive.method == m["method"], kind
        assert archive.names == m["names"] and archive.formats == m["formats"], kind
        decoded = codec.decompress(data)
        assert _same(decoded, [pixels[f"{kind}/{i}"] for i in range(m["count"])]), kind
        if m["version"] == 3:                    # formats 1-2 left parts of their headers unchecked
            broken = bytearray(data)
            broken[len(data) // 2] ^= 0x20
            with pytest.raises(ArchiveError):
                codec.decompress(bytes(broken))


def test_cli_salvage_and_test_name_the_damaged_chunk(tmp_path, digits):
    """2,400 digits are three chunks at the default size; one flipped byte in the middle."""
    from click.testing import CliRunner

    from serecodec.cli import main
    images = np.concatenate([digits.reshape(-1, 28, 28)] * 8)
    source = tmp_path / "d.npy"
    np.save(source, images)
    run = lambda *args: CliRunner().invoke(main, [str(a) for a in args])  # noqa: E731
    assert run("compress", source, "-q").exit_code == 0
    archive = tmp_path / "d.npy.sere"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x08
    archive.write_bytes(bytes(data))
    tested = run("test", archive)
    assert tested.exit_code == 1 and "chunk 2 of 3 (images 1001-2000)" in tested.output
    rescued = run("decompress", archive, "--salvage", "--npy", "-o", tmp_path / "out.npz")
    assert rescued.exit_code == 1 and "chunk 2 (images 1001-2000) is lost" in rescued.output
    assert "1400 of 2400 images restored" in rescued.output
    kept = np.load(tmp_path / "out.npz")
    assert len(kept.files) == 1400 and "Traceback" not in rescued.output
    assert run("decompress", archive, "-o", tmp_path / "plain").exit_code == 1     # no salvage: refused


def test_archives_are_the_same_whatever_the_worker_count(squares):
    images = list(squares[:60]) + [np.zeros((30, 40), np.uint8), 1 - squares[0]]
    archives = {workers: Codec(chunk_pixels=12 * 784, workers=workers).compress(images) for workers in (1, 2, 3)}
    assert archives[1] == archives[2] == archives[3]
    decoded = Codec(workers=3).decompress(archives[1])
    assert _same(decoded, images) and Codec(workers=2).salvage(archives[1]).restored == len(images)


def test_worker_processes_send_back_what_they_find(squares):
    """A chunk that parses but fails its pixel checksum is found in a worker process; the reason
    reaches decompress and salvage in the caller, and the other chunks are restored."""
    assert fork_available() or sys.platform != "linux"          # on Linux this runs the processes
    codec = Codec(chunk_pixels=25 * 784, workers=2)
    archive = codec.read(codec.compress(squares[:100], method="bits-back"))
    archive.chunks[1].content_crc ^= 1                          # re-sealed: only decoding can tell
    forged = archive.to_bytes()
    with pytest.raises(ArchiveError, match=r"chunk 2 of 4 \(images 26-50\).*pixel checksum"):
        codec.decompress(forged)
    rescued = codec.salvage(forged)
    assert [(n, span) for n, span, _ in rescued.lost] == [(2, range(25, 50))] and rescued.restored == 75
    assert "pixel checksum" in rescued.lost[0][2]
    assert all(np.array_equal(rescued.images[i], squares[i]) for i in range(100) if i not in range(25, 50))
