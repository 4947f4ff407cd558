"""Nothing lost, nothing escapes: hostile archives and files give one line, bounded time and
memory; decoding writes nothing outside OUTDIR or through a symlink; inputs are never replaced."""
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from serecodec.container.wire import raw_deflate, varints
from serecodec.cli import main
from serecodec.codec import Codec
from serecodec.errors import SerecodecError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import fuzz  # noqa: E402


@pytest.fixture(scope="module")
def codec():
    return Codec()


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def one_line_error(result, *fragments):
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def sealed(body: bytes, content_crc: int = 0) -> bytes:
    body += content_crc.to_bytes(4, "little")
    return body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")


def v3(method: int, params: bytes, count: int, size_runs: list, payload: bytes, flags: int = 0, extra: bytes = b"") -> bytes:
    runs = varints(len(size_runs), *(v for run in size_runs for v in run))
    return sealed(b"SeRe" + bytes([3, method, flags]) + params + varints(count) + runs + extra
                  + varints(len(payload)) + payload)


def hostile_archives(codec) -> dict:
    hash16 = bytes.fromhex(codec.model.hash)[:16]
    bits_back = lambda batches, count, sizes, payload: v3(3, hash16 + varints(1, 0) + batches, count, sizes, payload)  # noqa: E731
    names_bomb = raw_deflate(b"a" * (1 << 24))
    return {
        "1e9 images, one batch run": bits_back(varints(1, 65535, 15259), 10 ** 9, [(28, 28, 10 ** 9)], bytes(64)),
        "2^63 images": bits_back(varints(1, 1, 1), 2 ** 63, [(28, 28, 2 ** 63)], bytes(64)),
        "4e8 batch runs": bits_back(varints(1, 1, 4 * 10 ** 8), 4 * 10 ** 8, [(28, 28, 4 * 10 ** 8)], bytes(64)),
        "1e5 one-image batches": bits_back(varints(1, 1, 10 ** 5), 10 ** 5, [(28, 28, 10 ** 5)], bytes(16000)),
        "1e6 context images": v3(1, b"\x01", 10 ** 6, [(28, 28, 10 ** 6)], bytes(20)),
        "1e6 adaptive images": v3(2, b"\x01", 10 ** 6, [(28, 28, 10 ** 6)], bytes(20)),
        "huge image": v3(0, b"", 1, [(1 << 20, 1 << 20, 1)], bytes(20)),
        "deflate bomb": v3(0, b"", 1, [(28, 28, 1)], raw_deflate(bytes(1 << 22))),
        "names bomb": v3(0, b"", 1, [(1, 1, 1)], raw_deflate(b"\0"), flags=1,
                         extra=varints(len(names_bomb)) + names_bomb),
        "unknown method": v3(9, b"", 1, [(1, 1, 1)], b""),
        "unknown flags": v3(0, b"", 1, [(1, 1, 1)], b"", flags=0x80),
        "sizes disagree with count": v3(0, b"", 2, [(1, 1, 1)], raw_deflate(b"\0")),
        "zero-size image": v3(0, b"", 1, [(0, 5, 1)], b""),
        "nested JSON names (v2)": b"SeRe\x02\x03" + varints(1, 1, 1) + bytes(4) + varints(len(raw_deflate(b"[" * 100000)))
                                  + raw_deflate(b"[" * 100000) + varints(0),
        "names of ints (v2)": b"SeRe\x02\x03" + varints(1, 1, 1) + bytes(4) + varints(len(raw_deflate(b"[1]")))
                              + raw_deflate(b"[1]") + varints(0),
        "empty": b"",
        "magic only": b"SeRe",
    }


def test_hostile_archives_fail_fast_with_one_line(codec, tmp_path):
    for label, data in hostile_archives(codec).items():
        tic = time.perf_counter()
        with pytest.raises(SerecodecError):
            codec.decompress(data)
        assert time.perf_counter() - tic < 5, label
        path = tmp_path / "hostile.sere"
        path.write_bytes(data)
        for command in (["decompress", path, "-o", tmp_path / "out", "-f"], ["test", path]):
            one_line_error(run(*command), str(path))
        for command in (["info", path], ["list", path]):      # header only: may succeed, never crash or hang
            tic = time.perf_counter()
            result = run(*command)
            assert time.perf_counter() - tic < 5 and "Traceback" not in result.output, label
            if result.exit_code:
                one_line_error(result, str(path))
        assert not (tmp_path / "out").exists(), label


def test_hostile_archive_memory_is_bounded(codec, tmp_path):
    """In a fresh process, the worst hostile archives stay far below what they claim."""
    script = ("import sys; from serecodec.codec import Codec; from serecodec.errors import SerecodecError\n"
              "for p in sys.argv[1:]:\n"
              "    try: Codec().decompress(open(p, 'rb').read())\n"
              "    except SerecodecError: pass\n"
              "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    # VmHWM is this process's peak (ru_maxrss would include the forked parent's pages)
    paths = []
    for i, (label, data) in enumerate(hostile_archives(codec).items()):
        paths.append(tmp_path / f"{i}.sere")
        paths[-1].write_bytes(data)
    done = subprocess.run([sys.executable, "-c", script, *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 600_000, done.stdout          # kB: well under the GBs these claim


def test_seeded_fuzz_finds_no_traceback_hang_or_wrong_output(codec, tmp_path):
    report = fuzz.run(codec, mutants=1500, seed=7, slow_seconds=5.0)
    assert report["failures"] == 0, report["examples"][:3]
    assert report["totals"]["rejected"] > 1000
    cli = fuzz.run_cli(fuzz.corpus(codec), 40, seed=8, workdir=tmp_path)
    assert set(cli) <= {"rejected", "intact"}, cli


def test_mutated_image_files_give_one_line(tmp_path, digits):
    rng = np.random.default_rng(0)
    sources = {}
    image = digits[0].reshape(28, 28).astype(bool)
    for fmt, ext in (("PNG", "png"), ("PPM", "pbm"), ("TIFF", "tif"), ("GIF", "gif"), ("BMP", "bmp")):
        path = tmp_path / f"src.{ext}"
        Image.fromarray(image).save(path, format=fmt)
        sources[ext] = path.read_bytes()
    for i in range(60):
        ext = list(sources)[i % len(sources)]
        path = tmp_path / f"m{i}.{ext}"
        path.write_bytes(fuzz.mutate(sources[ext], rng))
        result = run("compress", path, "-o", tmp_path / f"m{i}.sere", "-q")
        assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
        if result.exit_code == 1:
            one_line_error(result, str(path))


def test_bad_image_and_npy_files(tmp_path):
    out = tmp_path / "o.sere"
    huge = tmp_path / "huge.png"
    Image.new("1", (50000, 50000)).save(huge)
    one_line_error(run("compress", huge, "-o", out), str(huge), "limit")
    fake = tmp_path / "fake.npy"
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000, 28, 28), }"
    fake.write_bytes(b"\x93NUMPY\x01\x00" + len(header.ljust(118) + "\n").to_bytes(2, "little")
                     + (header.ljust(118) + "\n").encode())
    one_line_error(run("compress", fake, "-o", out), str(fake))
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    one_line_error(run("compress", empty, "-o", out), str(empty))
    frames = tmp_path / "anim.gif"
    Image.new("1", (8, 8)).save(frames, save_all=True, append_images=[Image.new("1", (8, 8), 1)])
    assert run("compress", frames, "-o", out).exit_code == 0            # pages now (tests/test_multipage.py)
    assert "(page 2 of 2)" in run("list", out).output
    out.unlink()
    truncated = tmp_path / "page.png"
    Image.fromarray(np.eye(300, dtype=bool)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    one_line_error(run("compress", truncated, "-o", out), str(truncated))
    assert not out.exists()


def test_la_and_cmyk_images_read_what_they_show(tmp_path):
    ink = np.zeros((10, 12), np.uint8)
    ink[2:5, 3:9] = 255
    la = tmp_path / "la.png"
    Image.fromarray(np.stack([ink, np.full_like(ink, 255)], -1), mode="LA").save(la)
    cmyk = tmp_path / "c.tif"
    Image.fromarray(ink).convert("CMYK").save(cmyk)
    for path in (la, cmyk):
        archive = tmp_path / (path.name + ".sere")
        assert run("compress", path, "-o", archive, "-q").exit_code == 0
        assert run("decompress", archive, "--npy", "-o", tmp_path / (path.name + ".npy"), "-q").exit_code == 0
        assert np.array_equal(np.load(tmp_path / (path.name + ".npy"))[0], (ink == 255).astype(np.uint8)), path


def test_decoding_writes_nothing_through_symlinks_or_outside(codec, tmp_path, digits):
    images = digits[:2].reshape(-1, 28, 28)
    outside = tmp_path / "outside"
    outside.mkdir()
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "link").symlink_to(outside)
    archive = tmp_path / "a.sere"
    archive.write_bytes(codec.compress(images, names=["link/x", "y"]))
    one_line_error(run("decompress", archive, "-o", outdir, "-f"), "symlink")
    assert list(outside.iterdir()) == []
    for unsafe in (["../up", "y"], ["/abs", "y"], ["a", "a.png/b"], ["x" * 300, "y"]):
        archive.write_bytes(codec.compress(images, names=unsafe))
        one_line_error(run("decompress", archive, "-o", tmp_path / "o2"), str(archive))
        assert not (tmp_path / "o2").exists() and not (tmp_path / "up.png").exists()
    dangling = tmp_path / "o3"
    dangling.mkdir()
    (dangling / "y.png").symlink_to(tmp_path / "nowhere")
    archive.write_bytes(codec.compress(images, names=["x", "y"]))
    one_line_error(run("decompress", archive, "-o", dangling), "already exists")
    assert (dangling / "y.png").is_symlink()


def test_an_output_never_replaces_an_input(tmp_path, digits):
    src = tmp_path / "d.png"
    Image.fromarray(np.where(digits[0].reshape(28, 28) > 0, 200, 10).astype(np.uint8)).save(src)
    before = src.read_bytes()
    one_line_error(run("compress", src, "-o", src, "-f", "--threshold", "0.5"), "is also an input")
    assert src.read_bytes() == before
    archive = tmp_path / "a.sere"
    assert run("compress", src, "-o", archive, "--threshold", "0.5", "-q").exit_code == 0
    one_line_error(run("decompress", archive, "-o", archive, "-f"), "archive itself")
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_stale_temporary_files_are_cleaned_after_a_kill(tmp_path, digits):
    from serecodec.fileio import atomic_write_bytes
    stale = tmp_path / ".a.sere.serecodec-999999999-abc.tmp"      # a pid that cannot be running
    stale.write_bytes(b"half")
    atomic_write_bytes(tmp_path / "a.sere", b"whole")
    assert not stale.exists() and (tmp_path / "a.sere").read_bytes() == b"whole"


def test_names_that_cannot_be_stored_are_refused(codec, digits):
    from serecodec.errors import InputError
    images = digits[:2].reshape(-1, 28, 28)
    for names in (["a\0b", "c"], [1, "c"], [None, "c"], ["", "c"], ["x" * 5000, "c"]):
        with pytest.raises(InputError):
            codec.compress(images, names=names)
    odd = ["caf\udce9", "ok"]          # an undecodable POSIX byte, kept as a surrogate escape
    assert codec.read(codec.compress(images, names=odd)).names == odd


def test_gzip_habits_stdin_stdout_default_names_test_and_list(tmp_path, digits):
    image = digits[0].reshape(28, 28).astype(bool)
    one = tmp_path / "one.png"
    Image.fromarray(image).save(one)
    assert run("compress", one, "-q").exit_code == 0 and (tmp_path / "one.png.sere").exists()
    one.rename(tmp_path / "one_orig.png")
    assert run("decompress", tmp_path / "one.png.sere", "-q").exit_code == 0
    assert np.array_equal(np.array(Image.open(tmp_path / "one.png").convert("1")), image)
    for fmt, ext in (("PPM", "pbm"), ("TIFF", "tif")):
        src = tmp_path / f"src.{ext}"
        Image.fromarray(image).save(src, format=fmt, **({"compression": "group4"} if fmt == "TIFF" else {}))
        piped = run("compress", "-", "-c", input=src.read_bytes())
        assert piped.exit_code == 0
        back = run("decompress", "-", "-c", input=piped.stdout_bytes)
        assert back.exit_code == 0
        restored = Image.open(__import__("io").BytesIO(back.stdout_bytes))
        assert restored.format == fmt and np.array_equal(np.array(restored.convert("1")), image)
    archive = tmp_path / "many.sere"
    np.save(tmp_path / "many.npy", digits[:5].reshape(-1, 28, 28))
    assert run("compress", tmp_path / "many.npy", "-o", archive, "-q").exit_code == 0
    assert run("test", archive).exit_code == 0
    listing = json.loads(run("list", archive, "--json").output)
    assert listing["images"] == 5 and [e["height"] for e in listing["entries"]] == [28] * 5
    header = Codec().read(archive.read_bytes())                    # the array's name, dtype and shape are kept
    assert header.names == ["many"] * 5 and header.arrays == [("|u1", (5, 28, 28), 1)]


def test_decoder_never_imports_torch(tmp_path, digits):
    archive = tmp_path / "a.sere"
    archive.write_bytes(Codec().compress(digits[:300].reshape(-1, 28, 28), method="bits-back"))
    script = ("import sys; sys.modules['torch'] = None; sys.modules['matplotlib'] = None\n"
              "from serecodec.cli import main\n"
              "for args in (['--help'], ['info', sys.argv[1]], ['list', sys.argv[1]], ['test', sys.argv[1]],\n"
              "             ['decompress', sys.argv[1], '--npy', '-o', sys.argv[2], '-q']):\n"
              "    try: main(args)\n"
              "    except SystemExit as e: assert e.code in (0, None), (args, e.code)\n")
    done = subprocess.run([sys.executable, "-c", script, str(archive), str(tmp_path / "a.npy")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.array_equal(np.load(tmp_path / "a.npy"), digits[:300].reshape(-1, 28, 28))
