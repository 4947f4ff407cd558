#!/usr/bin/env python
"""Property-based fuzzing of what users hand the API: arrays of every dtype, byte order,
memory layout, stride, shape and value, through every payload method. Each outcome must be an
exact round trip (every pixel) or a ``SerecodecError``; a crash of the process, any other
exception, a wrong round trip or an archive that does not decode is a failure.

Run it in its own process (the test suite does), so that a crash in compiled code fails the
run instead of killing the caller:

    python benchmarks/input_fuzz.py --examples 10000      # writes results/input_fuzz.json
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import click
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serecodec.codec import Codec                  # noqa: E402
from serecodec.errors import SerecodecError        # noqa: E402
from serecodec.methods import METHOD_NAMES         # noqa: E402

DTYPES = ["bool", "u1", "u1", "u1", "i1", "<u2", ">u2", "<i4", ">i4", "<i8", ">u8", "<f2", "<f4", ">f4", "<f8",
          ">f8", "<c8", "O", "U1", "S1", "V1"]
VALUES = ["binary"] * 6 + ["binary255"] * 2 + ["bool-bytes"] * 2 + ["two", "negative", "half", "nan", "inf", "grey"]


@st.composite
def user_arrays(draw):
    """(array as a user might pass it, method, whether to pass a list of its images)."""
    dims = draw(st.sampled_from([1, 2, 2, 3, 3, 3, 3, 4]))
    shape = tuple(draw(st.integers(0 if i == 0 else 1, 40 if dims > 2 else 70)) for i in range(dims))
    if dims == 3 and draw(st.booleans()):
        shape = (draw(st.integers(1, 6)), 28, 28)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    bits = (rng.random(shape) < draw(st.sampled_from([0.0, 0.05, 0.5, 0.95, 1.0]))).astype(np.uint8)
    values, dtype = draw(st.sampled_from(VALUES)), np.dtype(draw(st.sampled_from(DTYPES)))
    with np.errstate(all="ignore"):
        if values == "bool-bytes":                 # bools whose bytes are 0/255, as u8.view(bool) gives
            array = (bits * 255).astype(np.uint8).view(bool)
        elif dtype.kind == "V":
            array = np.zeros(shape, dtype)
        elif values in ("binary", "binary255") or dtype.kind in "OUS":
            array = (bits * (255 if values == "binary255" else 1)).astype(dtype)
        else:
            array = bits.astype(np.float64)
            if array.size:
                array.flat[rng.integers(array.size)] = {"two": 2, "negative": -1, "half": 0.5, "nan": np.nan,
                                                        "inf": np.inf, "grey": 128}[values]
            array = array.astype(dtype)
    layout = draw(st.sampled_from(["C", "F", "reversed", "strided", "sliced"]))
    if layout == "F":
        array = np.asfortranarray(array)
    elif layout == "reversed" and array.ndim:
        array = array[::-1]
    elif layout == "strided" and array.ndim:
        array = np.repeat(array, 2, axis=-1)[..., ::2]
    elif layout == "sliced" and array.ndim >= 2:
        wide = np.zeros(array.shape[:-1] + (array.shape[-1] + 3,), array.dtype)
        wide[..., 1:-2] = array
        array = wide[..., 1:-2]
    return array, draw(st.sampled_from(METHOD_NAMES + ("auto",))), draw(st.booleans())


def reference(array: np.ndarray):
    """What the documented input rule makes of ``array`` (uint8 0/1), or None when it must be
    refused: bools by truth; numbers holding only 0 and 1; 0/255 in uint8 arrays."""
    if array.ndim not in (2, 3) or 0 in array.shape:
        return None
    kind = array.dtype.kind
    if kind == "b":
        return (array.view(np.uint8) != 0).astype(np.uint8)
    if kind not in "iuf":
        return None
    if np.isin(array, (0, 1)).all():
        return array.astype(np.uint8)
    if array.dtype == np.uint8 and np.isin(array, (0, 255)).all():
        return (array == 255).astype(np.uint8)
    return None


def outcome(codec: Codec, array, method: str, as_list: bool) -> str:
    expect = reference(array)
    given_images = list(array) if as_list and array.ndim == 3 else array
    try:
        data = codec.compress(given_images, method=method)
    except SerecodecError:
        # the static context model codes 28x28 digits only: refusing anything else is right
        return "refused" if expect is None or method == "context" else "refused-valid"
    except Exception as exc:       # anything else is what the fuzzer exists to find
        return f"traceback:{type(exc).__name__}:{exc}"[:200]
    if expect is None:
        return "accepted-invalid"
    try:
        back = codec.decompress(data)
    except Exception as exc:
        return f"undecodable:{type(exc).__name__}:{exc}"[:200]
    want = expect if expect.ndim == 3 else expect[None]
    if len(back) != len(want) or not all(np.array_equal(a, b) for a, b in zip(back, want)):
        return "wrong"
    return "exact"


def run(examples: int, seed: int) -> dict:
    codec = Codec(chunk_pixels=4 * 784)            # several chunks even for small inputs
    tally: Counter = Counter()
    per_method: dict = {}
    failures: list = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(user_arrays())
    def check(case):
        array, method, as_list = case
        result = outcome(codec, array, method, as_list)
        kind = result.split(":")[0]
        tally[kind] += 1
        per_method.setdefault(method, Counter())[kind] += 1
        if kind not in ("exact", "refused") and len(failures) < 20:
            failures.append({"result": result, "dtype": str(array.dtype), "shape": list(array.shape),
                             "method": method})

    tic = time.perf_counter()
    check()
    return {"examples": sum(tally.values()), "seed": seed, "outcomes": dict(tally),
            "per_method": {m: dict(c) for m, c in per_method.items()},
            "failures": sum(v for k, v in tally.items() if k not in ("exact", "refused")),
            "examples_failing": failures, "seconds": time.perf_counter() - tic}


@click.command()
@click.option("--examples", type=click.IntRange(min=1), default=10000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=ROOT / "results" / "input_fuzz.json")
def main(examples, seed, out):
    report = run(examples, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    click.echo(json.dumps({k: report[k] for k in ("examples", "outcomes", "failures", "seconds")}))
    sys.exit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
