"""Multi-page files (fax TIFFs, animated GIFs): compressed as the pages of one file, restored as
one file with the same pages and compression kind."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from serecodec.cli import main
from serecodec.codec import Codec
from serecodec.container import parse
from serecodec.errors import InputError
from serecodec.synthetic import text_page


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _pages(seed, count=3, shape=(240, 180)):
    rng = np.random.default_rng(seed)
    return [text_page(rng, shape, 8) for _ in range(count)]


def _write(path, pages, **options):
    pictures = [Image.fromarray((1 - p).astype(bool)) for p in pages]         # black ink on white
    if path.suffix == ".gif":
        pictures = [p.convert("L") for p in pictures]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], **options)


def _read(path):
    with Image.open(path) as img:
        out = []
        for i in range(img.n_frames):
            img.seek(i)
            out.append((np.asarray(img.convert("1")).copy(), img.info.get("compression")))
        return out


@pytest.mark.parametrize("name, options, kind", [("fax.tif", {"compression": "group4"}, "group4"),
                                                 ("fax3.tif", {"compression": "group3"}, "group3"),
                                                 ("plain.tif", {}, "raw"), ("anim.gif", {}, None)])
def test_a_multi_page_file_comes_back_as_one_file_with_its_pages(tmp_path, name, options, kind):
    source = tmp_path / name
    _write(source, _pages(len(name)), **options)
    archive = tmp_path / "a.sere"
    assert run_cli("compress", source, "-o", archive, "-q").exit_code == 0
    listing = run_cli("list", archive).output
    assert "(page 3 of 3)" in listing and listing.count(source.stem) == 3
    out = tmp_path / "out"
    out.mkdir()                                    # (an archive of one file writes that file; here, into out/)
    assert run_cli("decompress", archive, "-o", out, "-q").exit_code == 0
    assert [p.name for p in out.iterdir()] == [name]
    before, after = _read(source), _read(out / name)
    assert len(after) == 3
    assert all(np.array_equal(a[0], b[0]) and b[1] == kind for a, b in zip(before, after))


def test_pages_of_one_file_beside_single_files(tmp_path):
    _write(tmp_path / "fax.tif", _pages(1), compression="group4")
    Image.fromarray((1 - _pages(2, 1)[0]).astype(bool)).save(tmp_path / "one.png")
    archive = tmp_path / "a.sere"
    assert run_cli("compress", tmp_path / "fax.tif", tmp_path / "one.png", "-o", archive, "-q").exit_code == 0
    header = parse(archive.read_bytes())
    assert header.pages == [(0, 3)] and header.count == 4
    out = tmp_path / "out"
    assert run_cli("decompress", archive, "-o", out, "-q").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["fax.tif", "one.png"]


def test_the_library_checks_page_runs():
    codec = Codec()
    images = _pages(3, 4, (40, 30))
    data = codec.compress(images, names=["f"] * 3 + ["g"], formats=["tiff-g4"] * 3 + ["png"], pages=[(0, 3)])
    assert parse(data).pages == [(0, 3)]
    assert all(np.array_equal(a, b) for a, b in zip(codec.decompress(data), images))
    for bad in ([(0, 1)], [(2, 5)], [(1, 3), (0, 2)], [("a", 2)]):
        with pytest.raises(InputError):
            codec.compress(images, pages=bad)
    with pytest.raises(InputError):
        codec.compress(np.stack(images), ordered=False, pages=[(0, 2)])


def test_damaged_page_runs_are_refused_by_the_checksum_or_the_reader():
    codec = Codec()
    data = bytearray(codec.compress(_pages(4, 3, (30, 30)), pages=[(0, 3)]))
    from serecodec.errors import ArchiveError
    for i in range(6, 40):
        damaged = bytearray(data)
        damaged[i] ^= 0x01
        with pytest.raises(ArchiveError):
            codec.decompress(bytes(damaged))
