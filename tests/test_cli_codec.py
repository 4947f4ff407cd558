"""compress / decompress / info from the command line: round trips and every expected error."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from serecodec.cli import main
from serecodec.codec import Codec
from serecodec.coding_model import save_coding_model
from serecodec.export import export_coding_model
from serecodec.model import SeReVAE
from tests.conftest import tiny_config


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def save_png(path, image):
    Image.fromarray(image.astype(bool)).save(path)


@pytest.fixture()
def digit_files(tmp_path, digits):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    images = digits[:6].reshape(-1, 28, 28)
    for i, image in enumerate(images[:4]):
        save_png(folder / f"d{i}.png", image)
    Image.fromarray(images[4].astype(bool)).save(folder / "sub" / "d4.pbm")
    Image.fromarray((images[5] * 255).astype(np.uint8)).save(folder / "sub" / "grey_but_binary.png")
    return folder, images


def read_png(path):
    return (np.array(Image.open(path).convert("L")) > 127).astype(np.uint8)


def test_directory_round_trip_restores_names_and_pixels(tmp_path, digit_files):
    folder, images = digit_files
    archive = tmp_path / "a.sere"
    result = run("compress", folder, "-o", archive, "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert run("decompress", archive, "-o", out, "-q").exit_code == 0
    expected = {"d0.png": 0, "d1.png": 1, "d2.png": 2, "d3.png": 3, "sub/d4.pbm": 4, "sub/grey_but_binary.png": 5}
    for name, index in expected.items():     # each image comes back in its own format
        assert np.array_equal(read_png(out / name), images[index]), name
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(expected)


def test_npy_in_npy_out(tmp_path, digits):
    src = tmp_path / "digits.npy"
    np.save(src, digits[:40].reshape(-1, 28, 28))
    archive = tmp_path / "digits.sere"
    assert run("compress", src, "-o", archive, "-q").exit_code == 0
    report = json.loads(run("info", archive, "--json").output)
    sizes = {m: len(Codec().compress(digits[:40].reshape(-1, 28, 28), method=m)) for m in ("context", "bits-back")}
    assert report["method"] == min(sizes, key=sizes.get)                  # auto keeps the smallest
    if report["method"] != "bits-back":
        assert report["coding_model"] is None and report["model_matches"] is None   # no coding model needed
    assert run("compress", src, "-o", archive, "-q", "-f", "--method", "bits-back").exit_code == 0
    assert run("decompress", archive, "--npy", "-o", tmp_path / "back.npy", "-q").exit_code == 0
    assert np.array_equal(np.load(tmp_path / "back.npy"), digits[:40].reshape(-1, 28, 28))
    report = json.loads(run("info", archive, "--json").output)
    assert report["images"] == 40 and report["model_matches"] and report["shape"] == [28, 28]
    assert report["method"] == "bits-back" and report["initial_bits"] == 0 and report["warm_start_images"] > 0
    assert report["bits_per_dim"] == pytest.approx(8 * archive.stat().st_size / (40 * 784))
    assert np.load(src).shape == (40, 28, 28)   # input untouched
    mask = os.umask(0)
    os.umask(mask)
    assert archive.stat().st_mode & 0o777 == 0o666 & ~mask    # not mkstemp's private 0600


def expect_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def test_bad_images_are_refused_with_the_file_named(tmp_path, digits):
    grey = tmp_path / "grey.png"
    Image.fromarray((np.arange(784).reshape(28, 28) % 256).astype(np.uint8)).save(grey)
    colour = tmp_path / "colour.png"
    rgb = np.zeros((28, 28, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(colour)
    big = tmp_path / "big.png"
    Image.new("1", (20000, 20000)).save(big)          # a few KB on disk, 400 Mpixel decoded
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    out = tmp_path / "x.sere"
    expect_error(run("compress", grey, "-o", out), str(grey), "grey levels", "--threshold")
    expect_error(run("compress", colour, "-o", out), str(colour), "colour image")
    expect_error(run("compress", big, "-o", out), str(big), "pixels", "limit")
    expect_error(run("compress", text, "-o", out), str(text), "not an image")
    expect_error(run("compress", tmp_path / "missing.png", "-o", out), "missing.png", "no such file")
    expect_error(run("compress", empty_dir, "-o", out), "holds no image files")
    expect_error(run("compress", "-o", out), "no input files")
    assert not out.exists()


def test_threshold_converts_and_warns(tmp_path):
    grey = tmp_path / "grey.png"
    values = (np.arange(784).reshape(28, 28) % 256).astype(np.uint8)
    Image.fromarray(values).save(grey)
    result = run("compress", grey, "-o", tmp_path / "g.sere", "--threshold", "0.5")
    assert result.exit_code == 0, result.output
    assert "binarized the input" in result.output and "lossless only with respect" in result.output
    run("decompress", tmp_path / "g.sere", "-o", tmp_path / "g.png", "-q")     # one image: -o names the file
    assert np.array_equal(read_png(tmp_path / "g.png"), (values / 255.0 >= 0.5).astype(np.uint8))


def test_existing_outputs_are_never_overwritten_without_force(tmp_path, digit_files):
    folder, _ = digit_files
    archive = tmp_path / "a.sere"
    archive.write_bytes(b"precious")
    expect_error(run("compress", folder, "-o", archive), "already exists", "-f")
    assert archive.read_bytes() == b"precious"
    assert run("compress", folder, "-o", archive, "-f", "-q").exit_code == 0
    out = tmp_path / "out"
    (out).mkdir()
    (out / "d0.png").write_bytes(b"mine")
    expect_error(run("decompress", archive, "-o", out), "d0.png", "already exists")
    assert (out / "d0.png").read_bytes() == b"mine" and not (out / "d1.png").exists()
    assert run("decompress", archive, "-o", out, "-f", "-q").exit_code == 0


def test_corrupt_truncated_and_foreign_archives(tmp_path, digits):
    src = tmp_path / "d.npy"
    np.save(src, digits[:10].reshape(-1, 28, 28))
    archive = tmp_path / "d.sere"
    run("compress", src, "-o", archive, "-q", "--method", "bits-back")
    data = archive.read_bytes()
    flipped = tmp_path / "flipped.sere"
    flipped.write_bytes(data[:-20] + bytes([data[-20] ^ 1]) + data[-19:])
    expect_error(run("decompress", flipped, "-q"), str(flipped), "corrupted")
    short = tmp_path / "short.sere"
    short.write_bytes(data[:30])
    expect_error(run("decompress", short, "-q"), str(short), "truncated")
    expect_error(run("info", short), str(short), "truncated")
    expect_error(run("decompress", src, "-q"), str(src), "not a serecodec archive")
    expect_error(run("decompress", tmp_path / "none.sere", "-q"), "none.sere", "no such file")
    other = tmp_path / "other.coding.npz"
    save_coding_model(export_coding_model(SeReVAE(tiny_config()).eval()), other)
    foreign = tmp_path / "foreign.sere"
    foreign.write_bytes(Codec(other).compress(digits[:3].reshape(-1, 28, 28), method="bits-back"))
    expect_error(run("decompress", foreign, "-q"), str(foreign), "needs coding model", "--model")
    assert run("decompress", foreign, "--model", other, "-q", "--npy").exit_code == 0
    assert not (tmp_path / "flipped").exists() and not (tmp_path / "short").exists()


def test_duplicate_names_in_an_archive_never_overwrite(tmp_path, digits):
    archive = tmp_path / "dup.sere"
    archive.write_bytes(Codec().compress(digits[:2].reshape(-1, 28, 28), names=["same", "same"]))
    expect_error(run("decompress", archive, "-o", tmp_path / "out", "-q"), "same file name twice", "--npy")
    assert not (tmp_path / "out" / "same.png").exists()
    assert run("decompress", archive, "--npy", "-q").exit_code == 0
