"""The context-mixing page model: exact on every shape, the period finder, the archive naming its
fitted state, and a decoder that stays bounded on damaged payloads."""
from __future__ import annotations

import numpy as np
import pytest

from pathlib import Path

from serecodec.codec import Codec
from serecodec.errors import ArchiveError, ModelUnavailable, SerecodecError
from serecodec.methods.models import Models
from serecodec.page_model import (LAYOUT, LAYOUTS, PAD, SHIPPED_STATES, find_period, fresh_state, load_page_model,
                                  state_path, templates)
from serecodec.synthetic import line_art, text_page


DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def model():
    return load_page_model(state_path(SHIPPED_STATES[0]))


def _round_trip(model, images):
    payload, at = model.encode(images)
    flat = model.decode(payload, [im.shape for im in images], at)
    assert np.array_equal(flat, np.concatenate([im.reshape(-1) for im in images]))
    return payload


@pytest.mark.parametrize("shape", [(1, 1), (1, 77), (77, 1), (3, 3), (40, 41), (200, 5)])
def test_every_shape_round_trips(model, shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    for density in (0.0, 0.02, 0.5, 1.0):
        _round_trip(model, [(rng.random(shape) < density).astype(np.uint8)])


def test_a_run_of_mixed_images_carries_the_state(model):
    rng = np.random.default_rng(1)
    images = [text_page(rng, (120, 200), 8), line_art(rng, (60, 90)), np.zeros((5, 700), np.uint8),
              (rng.random((30, 30)) < 0.3).astype(np.uint8)]
    together = _round_trip(model, images)
    alone = sum(len(_round_trip(model, [im])) for im in images)
    assert len(together) < alone + 16


def test_period_finder_finds_a_screen():
    rng = np.random.default_rng(2)
    cell = (rng.random((7, 5)) < 0.5).astype(np.uint8)
    screen = np.tile(cell, (40, 60))
    dy, dx = find_period(screen)
    assert (dy % 7, dx % 5) == (0, 0)
    assert all(o[0] >= -PAD and abs(o[1]) <= PAD for t in templates((dy, dx)) for o in t)


def test_a_periodic_halftone_codes_far_below_the_adaptive_model():
    rng = np.random.default_rng(3)
    grey = np.clip(np.add.outer(np.linspace(0, 1, 256), np.linspace(0, 0.3, 256)) + rng.normal(0, 0.02, (256, 256)), 0, 1)
    bayer = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]])
    halftone = (grey > (np.tile(bayer, (64, 64)) + 0.5) / 16).astype(np.uint8)
    codec = Codec()
    pages = codec.compress(halftone, method="pages")
    adaptive = codec.compress(halftone, method="adaptive")
    assert np.array_equal(codec.decompress(pages)[0], halftone)
    assert len(pages) < 0.8 * len(adaptive)


def test_the_archive_names_the_fitted_state(tmp_path):
    codec = Codec()
    page = text_page(np.random.default_rng(4), (200, 300), 10)
    data = codec.compress(page, method="pages")
    chunk = codec.read(data).chunks[0]
    assert chunk.fields["state"] in {m.state_id for m in Models().pages}
    forged = bytearray(data)
    index = bytes(forged).index(bytes.fromhex(chunk.fields["state"]))
    forged[index] ^= 1                                   # another state id: refused by name, not misdecoded
    with pytest.raises((ModelUnavailable, ArchiveError)):
        codec.decompress(bytes(forged))


def test_a_decoder_codes_in_a_state_of_its_own_and_the_kept_states_stay_as_fitted():
    """A decoder that has not loaded the archive's state loads one for its own use and decodes in
    it (no copy); one that has (after compressing) decodes in a copy. Either way, chunks after
    the first, later archives and the encoder's next choices see the fitted states."""
    pages = [text_page(np.random.default_rng(seed), (150, 200), 8) for seed in (5, 6)]
    codec = Codec(chunk_pixels=150 * 200)
    data = codec.compress(pages, method="pages")
    assert len(codec.read(data).chunks) == 2
    fresh = Codec(chunk_pixels=150 * 200)
    for decoder in (fresh, fresh, codec, codec):
        assert all(np.array_equal(a, b) for a, b in zip(decoder.decompress(data), pages))
    assert codec.compress(pages, method="pages") == data and fresh.compress(pages, method="pages") == data


def test_damaged_payloads_fail_cleanly(model):
    rng = np.random.default_rng(5)
    page = text_page(rng, (300, 300), 10)
    payload, at = model.encode([page])
    for _ in range(30):
        damaged = bytearray(payload)
        cut = int(rng.integers(1, len(payload)))
        damaged = damaged[:cut] if rng.random() < 0.5 else damaged
        damaged[int(rng.integers(0, len(damaged)))] ^= 1 << int(rng.integers(0, 8))
        try:
            back = model.decode(bytes(damaged), [page.shape], at)
        except SerecodecError:
            continue
        assert back.shape == (page.size,)                # decoded something: the CRC would catch it


def test_shipped_states_have_the_fresh_layout_and_each_wins_its_kind():
    fresh = fresh_state()
    models = Models().pages
    for model in models:
        assert all(getattr(model.state, n).shape == getattr(fresh, n).shape for n in fresh.ARRAYS)
    text = _real("real-text-300dpi.png")            # a crop of a training page (R's FAQ at 300 dpi)
    assert len(models[0].encode([text])[0]) < 0.85 * len(models[1].encode([text])[0])


def _real(name):
    """A small real image from tests/data, with ink = 1 as the codec codes it."""
    from PIL import Image
    from serecodec.inputs import background_is_one, with_polarity
    image = np.asarray(Image.open(DATA / name)).astype(np.uint8)
    return with_polarity([image], background_is_one([image]))[0]


@pytest.mark.parametrize("name, most", [("real-text-300dpi.png", 0.7), ("real-halftone.png", 0.7)])
def test_real_pages_code_well_below_the_adaptive_model(name, most):
    codec = Codec()
    image = _real(name)
    data = codec.compress(image)
    assert codec.read(data).method == "pages"
    assert np.array_equal(codec.decompress(data)[0], image)
    assert len(data) < most * len(codec.compress(image, method="adaptive"))


def test_the_encoder_keeps_the_state_and_adaptive_pixel_that_code_smaller():
    from serecodec.page_model import PERIOD_CANDIDATES, choose, period_candidates, sample
    models = Models().pages
    page = _real("real-halftone.png")
    candidates = period_candidates(page, PERIOD_CANDIDATES)
    assert candidates[0] == find_period(page) and len(set(candidates)) == PERIOD_CANDIDATES
    chosen, at = choose(models, [page], candidates)
    probe = sample([page])                                  # it decides on a band of the page
    assert sum(im.size for im in probe) < page.size
    first = [len(m.encode(probe, candidates[0])[0]) for m in models]
    assert chosen is models[int(np.argmin(first))]          # the state, at the first candidate
    by_at = [len(chosen.encode(probe, a)[0]) for a in candidates]
    assert at == candidates[int(np.argmin(by_at))]          # then that state's best candidate
    assert len(chosen.encode([page], at)[0]) <= 1.02 * min(len(m.encode([page], a)[0])
                                                           for m in models for a in candidates)


def test_train_page_model_fits_a_state_that_compress_then_uses(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from PIL import Image
    from serecodec.cli import main
    monkeypatch.setenv("SERECODEC_MODELS", str(tmp_path / "models"))
    pages = tmp_path / "pages"
    pages.mkdir()
    rng = np.random.default_rng(8)
    for i in range(3):
        Image.fromarray((1 - text_page(rng, (200, 200), 9)).astype(bool)).save(pages / f"p{i}.png")
    runner = CliRunner()
    done = runner.invoke(main, ["train", "--page-model", str(pages), "-o", "mine", "-q"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    fitted = tmp_path / "models" / "mine.pages.npz"
    mine = load_page_model(fitted)
    assert mine.state_id in {m.state_id for m in Models().pages}          # compress now tries it
    page = text_page(rng, (200, 200), 9)
    data = Codec().compress(page, method="pages")
    assert np.array_equal(Codec().decompress(data)[0], page)
    again = runner.invoke(main, ["train", "--page-model", str(pages), "-o", "mine", "-q"])
    assert again.exit_code != 0                                          # never overwritten unless -f


@pytest.mark.parametrize("method", ["pages", "adaptive", "auto"])
def test_blank_pages_of_any_size_round_trip(method):
    """A repeated row costs one flag, so a blank page is a few bytes: the decoder's bound on what
    a payload can hold counts rows, not pixels (a blank 6000x6000 page failed verification)."""
    codec = Codec()
    for shape in ((3000, 3000), (1, 200_000), (200_000, 1)):
        for fill in (0, 1):
            image = np.full(shape, fill, np.uint8)
            data = codec.compress(image, method=method)
            assert len(data) < 200
            assert np.array_equal(codec.decompress(data)[0], image)


def test_archives_of_the_first_layout_decode_as_they_did_and_the_layered_state_codes_smaller():
    """tests/data/legacy/pages-layout-1*.sere: written by the page model's first layout (one
    mixer, one APM), whose fitted states still ship and are found by their ids."""
    from PIL import Image
    codec, legacy = Codec(), DATA / "legacy"
    expected = np.load(legacy / "pages-layout-1.npz")
    images = [expected[str(i)] for i in range(len(expected.files))]
    old = (legacy / "pages-layout-1.sere").read_bytes()
    assert all(np.array_equal(a, b) for a, b in zip(codec.decompress(old), images, strict=True))
    models = Models()
    assert not models.pages_for(codec.read(old).chunks[0].fields["state"]).state.layered
    assert all(model.state.layered for model in models.pages)
    assert len(codec.compress(images, method="pages")) < len(old)
    halftone = (np.asarray(Image.open(DATA / "real-halftone.png").convert("1")) == 0).astype(np.uint8)
    assert np.array_equal(codec.decompress((legacy / "pages-layout-1-halftone.sere").read_bytes())[0], halftone)


def test_every_shipped_state_is_found_by_its_id():
    """Archives name states by id; the current ones are looked for first, the others still found."""
    from serecodec.page_model import MODELS_DIR, find_page_state, state_id
    shipped = sorted(MODELS_DIR.glob("*.pages.npz"))
    assert {state_path(name) for name in SHIPPED_STATES} <= set(shipped) and len(shipped) > len(SHIPPED_STATES)
    for path in shipped:
        assert find_page_state(state_id(path.read_bytes())) == path
    assert find_page_state("0" * 16) is None


def test_a_state_file_of_the_wrong_layout_is_refused(tmp_path):
    """A state whose arrays do not have the layout's shapes never reaches the kernel."""
    from serecodec.page_model import PageModelError, save_state
    state = fresh_state()
    state.apm2 = state.apm2[:-33]                       # one APM context short: the kernel would read past it
    save_state(state, tmp_path / "short.pages.npz")
    with pytest.raises(PageModelError, match="wrong layout"):
        load_page_model(tmp_path / "short.pages.npz")
    state = fresh_state()
    state.final = state.final[:-1]                      # the match model's final weight sets, one short
    save_state(state, tmp_path / "final.pages.npz")
    with pytest.raises(PageModelError, match="wrong layout"):
        load_page_model(tmp_path / "final.pages.npz")
    for layout in LAYOUTS:
        save_state(fresh_state(layout), tmp_path / f"{layout}.pages.npz")
        assert load_page_model(tmp_path / f"{layout}.pages.npz").state.layout == layout


def test_the_compiled_kernel_codes_exactly_as_the_numba_kernel_did():
    """tests/data/legacy/pages-layered-numba.sere: written by the layered page model's numba
    kernel (the release before the C one). The C kernel must decode it and, from the same
    images, write the very same bytes."""
    images, old = _legacy("pages-layered-numba")
    codec = Codec()
    assert all(np.array_equal(a, b) for a, b in zip(codec.decompress(old), images, strict=True))
    assert _codec_of_layout(2).compress(images, method="pages") == old      # from the layered state, as then
    assert len(codec.compress(images, method="pages")) < len(old)     # the shipped match layout: smaller


@pytest.mark.parametrize("layout", [3, 4])
def test_archives_of_the_match_layouts_decode_and_encode_as_they_did(layout):
    """tests/data/legacy/pages-layout-N.sere: written when layout N (3: the match model; 4: its
    linear inputs) first shipped; its state is found by id, and the same images with the same
    states give the same bytes."""
    images, old = _legacy(f"pages-layout-{layout}")
    codec = Codec()
    assert all(np.array_equal(a, b) for a, b in zip(codec.decompress(old), images, strict=True))
    assert codec.models.pages_for(codec.read(old).chunks[0].fields["state"]).state.layout == layout
    assert _codec_of_layout(layout).compress(images, method="pages") == old
    # a real text crop: the match model 2% smaller than the layered layout, its linear inputs 0.8% smaller again
    assert len(_codec_of_layout(layout - 1).compress(images, method="pages")) > {3: 1.01, 4: 1.005}[layout] * len(old)


def _legacy(name: str) -> tuple:
    """(images, archive bytes) of a fixture in tests/data/legacy (NAME.npz, NAME.sere)."""
    expected = np.load(DATA / "legacy" / f"{name}.npz")
    return [expected[str(i)] for i in range(len(expected.files))], (DATA / "legacy" / f"{name}.sere").read_bytes()


def _codec_of_layout(layout: int) -> Codec:
    """A codec whose page model starts from a layout's two first shipped states (documents and
    halftones; the current layout's are named without a suffix)."""
    codec = Codec()
    suffix = "" if layout == LAYOUT else f"-layout{layout}"
    codec.models.pages_paths = [state_path(f"documents{suffix}"), state_path(f"halftones{suffix}")]
    return codec


def test_the_match_model_codes_real_text_smaller_from_the_same_untrained_start():
    """Glyphs repeat across a text page: where the pixel's large context last occurred, the
    pixels that followed tend to follow again (a crop of a real 300 dpi page: 3% here, 9% on the
    corpus's held-out text pages with the fitted states)."""
    from serecodec.page_model import PageModel
    text = _real("real-text-300dpi.png")
    sizes = {layout: len(_round_trip(PageModel(fresh_state(layout), "probe"), [text])) for layout in (2, 3)}
    assert sizes[3] < 0.985 * sizes[2]


def test_the_kernel_refuses_arrays_that_disagree_with_its_layout(model, monkeypatch):
    """The kernel checks every array against what its parameters make it touch: a caller's
    mistake is a ValueError, never a read outside an array."""
    from serecodec import page_model
    image = np.zeros((5, 7), np.uint8)
    args = dict(state=model.state.copy(), decoding=False, pixels=image.reshape(-1), heights=np.array([5]),
                widths=np.array([7]), payload=np.zeros(0, np.uint8), at=(0, -5))
    page_model.run(**args)                               # as given: fine
    broken = [dict(args, pixels=np.zeros(34, np.uint8)), dict(args, widths=np.array([7, 1])),
              dict(args, heights=np.array([-1]), pixels=np.zeros(0, np.uint8))]
    short = model.state.copy()
    short.tables = short.tables[:1000]
    broken.append(dict(args, state=short))
    short = model.state.copy()
    short.runs = short.runs[:-1]
    broken.append(dict(args, state=short))
    short = model.state.copy()
    short.weights2 = short.weights2[:10]
    broken.append(dict(args, state=short))
    assert model.state.layout == 4
    short = model.state.copy()
    short.weights = short.weights[:, :-1].copy()        # a linear input's weight missing
    broken.append(dict(args, state=short))
    short = model.state.copy()
    short.tables = short.tables[:-1]                    # the match model's last slot missing
    broken.append(dict(args, state=short))
    short = model.state.copy()
    short.final = short.final[:-2]                      # a match state's final weights missing
    broken.append(dict(args, state=short))
    for wrong in broken:
        with pytest.raises(ValueError):
            page_model.run(**wrong)
    with pytest.raises(ValueError, match="past the padding"):        # a template reaching too far
        page_model.code_images(False, image.reshape(-1), np.array([5]), np.array([7]), np.zeros(0, np.uint8),
                               np.array([[[0, -PAD - 1]]]), 1, np.array([1]), np.array([0]), np.array([10]),
                               np.array([255, 255]), model.state.tables, model.state.weights[:, :2].copy(),
                               model.state.apm, 0, 6, 6, 0, page_model.SQUASH, page_model.STRETCH,
                               page_model.RECIPROCAL, model.state.runs, np.zeros(0, np.int64), np.zeros(0, np.int64),
                               1, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0)
    for match_bits in (-1, 9, 25, 1 << 40):                   # the match table's size is checked too
        with monkeypatch.context() as patch, pytest.raises((ValueError, OverflowError)):
            patch.setattr(page_model, "MATCH_BITS", match_bits)
            page_model.run(**args)


def test_the_checked_encoder_is_verified_by_a_decoder_reading_its_bytes_as_they_come(model):
    """``encode_checked``: the same payload as ``encode``, and a check by the kernel's decoder
    fed through a pipe while the encoder writes (a real decode: from another state it differs)."""
    from concurrent.futures import ThreadPoolExecutor
    from serecodec.page_model import Pipe, PageModel, run
    rng = np.random.default_rng(10)
    images = [text_page(rng, (300, 400), 9), (rng.random((40, 50)) < 0.4).astype(np.uint8)]
    with ThreadPoolExecutor(1) as threads:
        payload, check = model.encode_checked(images, (-2, 3), threads)
        assert payload == model.encode(images, (-2, 3))[0] and check()
        other = PageModel(fresh_state(), "fresh")
        flat = np.concatenate([im.reshape(-1) for im in images])
        shape = (np.array([300, 40]), np.array([400, 50]))
        pipe = Pipe(2 * (flat.size + 340) + 64)
        back = np.zeros_like(flat)
        decoding = threads.submit(run, other.state.copy(), True, back, *shape, np.zeros(0, np.uint8), (-2, 3), pipe)
        run(model.state.copy(), False, flat, *shape, np.zeros(0, np.uint8), (-2, 3), pipe)
        pipe.close()
        decoding.result()
        assert not np.array_equal(back, flat)                  # the wrong state decodes the wrong pixels
        with pytest.raises(ValueError, match="already written"):
            run(model.state.copy(), False, flat, *shape, np.zeros(0, np.uint8), (-2, 3), pipe)
        with pytest.raises(ValueError, match="too small"):
            run(model.state.copy(), False, flat, *shape, np.zeros(0, np.uint8), (-2, 3), Pipe(100))
        unwritten = Pipe(1000)                                  # a writer that never came: the reader ends
        unwritten.close()
        _, read = run(model.state.copy(), True, np.zeros_like(flat), *shape, np.zeros(0, np.uint8), (-2, 3), unwritten)
        assert read > 0
