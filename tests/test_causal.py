"""The causal-context module: templates are causal, numpy and torch agree, and the adaptive
model's compiled registers hold exactly the JBIG2_16 template."""
import numpy as np
import pytest
import torch

from serecodec.adaptive_kernel import context_at
from serecodec.causal import JBIG2_16, TEMPLATES, check_causal, context_numbers, neighbours, neighbours_torch


def test_templates_are_causal_and_offsets_after_the_pixel_are_refused():
    for template in TEMPLATES.values():
        assert check_causal(template) == template
    for bad in (((0, 0),), ((1, -3),), ((0, 2), (-1, 0)), ()):
        with pytest.raises(ValueError):
            check_causal(bad)


def test_numpy_and_torch_neighbours_agree_and_outside_reads_zero():
    rng = np.random.default_rng(0)
    images = (rng.random((3, 9, 13)) < 0.4).astype(np.uint8)
    for template in TEMPLATES.values():
        got = neighbours(images, template)
        twin = neighbours_torch(torch.as_tensor(images, dtype=torch.float32), template).permute(0, 2, 3, 1)
        assert np.array_equal(got, twin.numpy().astype(np.uint8))
        for k, (dy, dx) in enumerate(template):
            for y, x in ((0, 0), (4, 6), (8, 12)):
                inside = 0 <= y + dy < 9 and 0 <= x + dx < 13
                assert got[1, y, x, k] == (images[1, y + dy, x + dx] if inside else 0)


def test_the_adaptive_kernel_codes_with_jbig2_16():
    rng = np.random.default_rng(1)
    image = (rng.random((7, 11)) < 0.5).astype(np.uint8)
    numbers = context_numbers(image[None], JBIG2_16)[0]
    flat = image.reshape(-1)
    for y in range(7):
        for x in range(11):
            assert numbers[y, x] == context_at(flat, 0, 11, 7, y, x)
