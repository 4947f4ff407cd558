"""What users hand in: any array (the input gate), directories with other files, their own
.npy and PBM files back as they were, polarity, and the habits of a first day on the command line."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from serecodec.cli import main
from serecodec.codec import Codec
from serecodec.errors import InputError
from serecodec.inputs import as_images, require_bilevel
from serecodec.methods import METHOD_NAMES, by_name

ROOT = Path(__file__).resolve().parent.parent


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_generated_inputs_round_trip_or_are_refused_in_a_separate_process(tmp_path):
    """benchmarks/input_fuzz.py in its own process: a crash in compiled code fails this test."""
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "input_fuzz.py"), "--examples", "400",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["failures"] == 0 and report["examples"] == 400
    assert report["outcomes"]["exact"] > 100 and report["outcomes"]["refused"] > 50


@pytest.mark.parametrize("method", METHOD_NAMES + ("auto",))
def test_a_pillow_image_compresses_under_every_method(digits, method):
    """np.array(Image.open(...)) of a mode-1 file is bool; Pillow's bytes for True are 255."""
    image = digits[0].reshape(28, 28).astype(bool)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    loaded = np.array(Image.open(io.BytesIO(buffer.getvalue())))
    for given in (loaded, (image.astype(np.uint8) * 255).view(bool)):
        data = Codec().compress(given, method=method)
        assert np.array_equal(Codec().decompress(data)[0], image.astype(np.uint8))


def test_the_gate_refuses_what_is_not_bilevel():
    for bad, why in ((np.full((4, 4), 2), "0/1"), (np.full((4, 4), np.nan), "0/1"), (np.full((4, 4), -1), "0/1"),
                     (np.full((4, 4), 0.5), "0/1"), ([np.zeros((4, 4, 3), np.uint8)], "2-D"), (np.zeros((2, 2, 2, 2), np.uint8), "shape"),
                     (np.array([["a"]]), "numbers"), (np.zeros((0, 4, 4)), "no images"),
                     (np.full((3, 3), 255, np.int32), "0/1"), ([], "no images")):
        with pytest.raises(InputError, match=why):
            as_images(bad)
    with pytest.raises(InputError):
        require_bilevel(np.full(4, 255, np.uint8))                 # kernels check for themselves
    with pytest.raises(InputError):
        require_bilevel(np.ones(4, np.int64))
    odd = np.ones((5, 6), dtype=">f8")[:, ::-1]
    assert as_images(odd).flags.c_contiguous and as_images(odd).dtype == np.uint8


def test_a_white_page_is_coded_as_its_negative(digits):
    """A fax page reads white = 1 (mean ~0.96): it is coded inverted, so the model sees ink = 1."""
    ink = digits[:100].reshape(-1, 28, 28)
    codec = Codec()
    as_ink, as_page = codec.compress(ink, method="bits-back"), codec.compress(1 - ink, method="bits-back")
    assert len(as_page) <= len(as_ink) + 16                       # not 9 bits/dim
    assert np.array_equal(codec.decompress(as_page), 1 - ink) and codec.read(as_page).inverted == [True] * 100
    assert codec.read(as_ink).inverted is None
    mixed = np.concatenate([ink[:20], 1 - ink[20:40]])               # unordered: the same multiset back
    for method in ("bits-back", "adaptive"):
        back = codec.decompress(codec.compress(mixed, ordered=False, method=method))
        assert sorted(map(bytes, back.reshape(40, -1))) == sorted(map(bytes, mixed.reshape(40, -1)))


def test_non_images_in_a_directory_stop_the_run_unless_skipped(tmp_path, digits):
    folder = tmp_path / "scans"
    folder.mkdir()
    Image.fromarray(digits[0].reshape(28, 28).astype(bool)).save(folder / "a.png")
    (folder / "README.txt").write_text("notes")
    result = run("compress", folder, "-o", tmp_path / "a.sere")
    assert result.exit_code == 1 and "README.txt: not an image file" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "a.sere").exists()
    result = run("compress", folder, "-o", tmp_path / "a.sere", "--skip-other")
    assert result.exit_code == 0 and "README.txt: not an image file (left out)" in result.output
    assert Codec().read((tmp_path / "a.sere").read_bytes()).names == ["a"]


@pytest.mark.parametrize("dtype,shape,scale", [("float32", (6, 28, 28), 1), ("bool", (4, 28, 28), 1),
                                               ("uint8", (5, 784), 255), ("int16", (9, 13), 1)])
def test_an_npy_comes_back_as_the_same_npy(tmp_path, digits, dtype, shape, scale):
    array = (digits.reshape(-1)[:int(np.prod(shape))].reshape(shape) * scale).astype(dtype)
    source = tmp_path / "x.npy"
    np.save(source, array)
    assert run("compress", source, "-q").exit_code == 0
    source.rename(tmp_path / "original.npy")
    assert run("decompress", tmp_path / "x.npy.sere", "-q").exit_code == 0
    back = np.load(tmp_path / "x.npy")
    assert back.dtype == array.dtype and back.shape == array.shape and np.array_equal(back, array)


def test_npz_keys_are_the_stored_names(tmp_path, digits):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, size in enumerate((28, 20)):
        Image.fromarray(digits[i].reshape(28, 28)[:size, :size].astype(bool)).save(folder / f"d{i}.png")
    assert run("compress", folder, "-o", tmp_path / "d.sere", "-q").exit_code == 0
    assert run("decompress", tmp_path / "d.sere", "--npy", "-o", tmp_path / "d.npz", "-q").exit_code == 0
    assert sorted(np.load(tmp_path / "d.npz").files) == ["d0", "d1"]


def test_pbm_and_pgm_files_come_back_byte_identical(tmp_path, digits):
    folder = tmp_path / "in"
    folder.mkdir()
    page = digits[3].reshape(28, 28)
    (folder / "scan.pbm").write_bytes(b"P4\n# scanner 200 dpi\n  28 28\n" + np.packbits(1 - page, axis=1).tobytes())
    (folder / "grey.pgm").write_bytes(b"P5 28 28\n# one\n255\n" + (page * 255).astype(np.uint8).tobytes())
    assert run("compress", folder, "-o", tmp_path / "p.sere", "-q").exit_code == 0
    assert run("decompress", tmp_path / "p.sere", "-o", tmp_path / "out", "-q").exit_code == 0
    for name in ("scan.pbm", "grey.pgm"):
        assert (tmp_path / "out" / name).read_bytes() == (folder / name).read_bytes()


def test_outputs_go_where_tar_and_zstd_users_expect(tmp_path, digits):
    source = tmp_path / "x.npy"
    np.save(source, digits[:3].reshape(-1, 28, 28))
    result = run("compress", source, "-o", tmp_path / "missing" / "dir" / "x.sere", "-q")
    assert result.exit_code == 0 and (tmp_path / "missing" / "dir" / "x.sere").exists()
    (tmp_path / "into").mkdir()
    assert run("compress", source, "-o", tmp_path / "into", "-q").exit_code == 0
    assert (tmp_path / "into" / "x.npy.sere").exists()
    (tmp_path / "afile").write_text("")
    result = run("compress", source, "-o", tmp_path / "afile" / "x.sere")
    assert result.exit_code == 1 and ".tmp" not in result.output and "afile" in result.output


def test_verbose_says_which_method_each_chunk_kept_and_why(tmp_path, digits):
    source = tmp_path / "x.npy"
    np.save(source, digits[:30].reshape(-1, 28, 28))
    result = run("compress", source, "-v")
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("chunk 1"))
    assert "bits/dim" in line and "bytes/image" in line and all(m in line for m in METHOD_NAMES if by_name(m).auto)


def test_python_dash_m_runs_the_command():
    proc = subprocess.run([sys.executable, "-m", "serecodec", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "compress" in proc.stdout


def test_bpd_prints_the_cheap_figures_first(tmp_path, digits):
    data = tmp_path / "d.npy"
    np.save(data, digits[:40].reshape(-1, 28, 28))
    result = run("bpd", "--data", data, "--iw-samples", "8", "--iw-limit", "5")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    order = [next(i for i, line in enumerate(lines) if line.startswith(label))
             for label in ("-ELBO (float model)", "-ELBO (coding model)", "coded rate, total", "-log p(x), IW-8")]
    assert order == sorted(order) and "IW-8 on 5 images: about" in result.output
