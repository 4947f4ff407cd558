"""The images every benchmark measures: the fixed binarized MNIST test set, or for ``--quick``
its first 300 digits, committed as the test fixture, so a quick run needs no download."""
from __future__ import annotations

import numpy as np

from serecodec.data import fixed_test_set, load_fixture, load_mnist

QUICK_IMAGES = 300


def test_images(quick: bool, limit=None, data_dir=None) -> tuple[np.ndarray, str]:
    """(uint8 array (N, 784) of 0/1, a sentence naming the source)."""
    if quick:
        images = load_fixture()[:limit]
        return images, f"First {len(images)} images of the fixed binarized MNIST test set (committed fixture)"
    images = fixed_test_set(load_mnist(data_dir))[:limit]
    return images, "Fixed binarized MNIST test set"


def write_results(out_dir, name: str, report: dict, markdown: str) -> None:
    """results/NAME.json and NAME.md, the pair every benchmark leaves behind."""
    import json
    from pathlib import Path
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown)
