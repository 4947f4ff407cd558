"""The page-state cache: a state inflated once is mapped by later loads, codes the same bytes,
is never written through, and a damaged, foreign or unwritable cache only costs the inflate."""
from __future__ import annotations

import os

import numpy as np
import pytest

from serecodec import state_cache
from serecodec.page_model import PageState, load_page_model, state_path
from serecodec.synthetic import text_page


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SERECODEC_STATE_CACHE", str(tmp_path / "states"))
    return tmp_path / "states"


def _same_state(a, b) -> bool:
    return all(np.array_equal(getattr(a.state, n), getattr(b.state, n)) for n in PageState.ARRAYS)


def _replace(path, data: bytes) -> None:
    """New content under a new inode, as another process's atomic rewrite would leave it."""
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.mark.parametrize("name", ["documents", "documents-layout1"])
def test_a_state_is_inflated_once_then_mapped_and_codes_the_same_bytes(cache, name):
    first = load_page_model(state_path(name))
    state_cache.wait()                                               # (written in a thread)
    files = list(cache.glob("*.state"))
    assert not first.mapped and [f.name for f in files] == [f"{first.state_id}.state"]
    second = load_page_model(state_path(name))
    assert second.mapped and second.state_id == first.state_id and _same_state(first, second)
    page = text_page(np.random.default_rng(3), (160, 240), 9)
    before = files[0].read_bytes()
    assert second.encode([page], (-1, 3)) == first.encode([page], (-1, 3))
    payload, at = second.encode([page])
    assert np.array_equal(second.decode(payload, [page.shape], at, in_place=True), page.reshape(-1))
    # coding never writes through the mapping: the file and the model's own state are as they were
    assert files[0].read_bytes() == before and _same_state(first, second)
    uncached = load_page_model(state_path(name), cache=False)
    assert not uncached.mapped and _same_state(first, uncached)


@pytest.mark.parametrize("damage", ["array byte", "truncated", "garbage", "empty", "other id"])
def test_a_damaged_cache_file_is_ignored_and_rewritten(cache, damage):
    model = load_page_model(state_path("halftones"))
    state_cache.wait()
    path = cache / f"{model.state_id}.state"
    raw = bytearray(path.read_bytes())
    if damage == "array byte":
        raw[len(raw) // 2] ^= 0x10
    elif damage == "truncated":
        raw = raw[:len(raw) // 3]
    elif damage == "garbage":
        raw = bytearray(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif damage == "empty":
        raw = bytearray()
    else:
        at = raw.index(model.state_id.encode())
        raw[at:at + 16] = b"0123456789abcdef"
    _replace(path, bytes(raw))
    again = load_page_model(state_path("halftones"))
    assert not again.mapped and _same_state(model, again)            # inflated from the npz
    state_cache.wait()
    assert load_page_model(state_path("halftones")).mapped            # and cached again, soundly


def test_no_cache_when_off_or_unwritable(tmp_path, monkeypatch):
    monkeypatch.setenv("SERECODEC_STATE_CACHE", "off")
    assert not load_page_model(state_path("documents")).mapped
    state_cache.wait()
    assert not load_page_model(state_path("documents")).mapped
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("SERECODEC_STATE_CACHE", str(blocked / "states"))
    first = load_page_model(state_path("documents"))
    state_cache.wait()
    second = load_page_model(state_path("documents"))
    assert not first.mapped and not second.mapped and _same_state(first, second)


def test_the_cache_keeps_the_states_used_last(cache):
    arrays = {"values": np.arange(10, dtype=np.int64)}
    for i in range(state_cache.KEEP + 3):
        assert state_cache.store(f"{i:016x}", arrays)
        os.utime(cache / f"{i:016x}.state", (1000 + i, 1000 + i))
    kept = sorted(f.stem for f in cache.glob("*.state"))
    assert kept == [f"{i:016x}" for i in range(3, state_cache.KEEP + 3)]
    assert np.array_equal(state_cache.load(kept[-1])["values"], arrays["values"])
