"""Finding models, in one place: by name, by path, or by the hash an archive names.

Models live in the package (``serecodec/models``, shipped) and in the user model directory
(``$SERECODEC_MODELS``, else the platform's user data dir, e.g. ``~/.local/share/serecodec/models``),
where ``serecodec train --install`` puts them. A model NAME is ``NAME.pt`` (float weights, for
``bpd`` and further training) beside ``NAME.coding.npz`` (the integer coding model that archives
name by hash) and ``NAME.json`` (its index card: hash, tile size, measured bits/dim), so that a
decoder can find the model an archive needs without loading every file. Numpy only.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

from platformdirs import user_data_dir

from .coding_model import load_coding_model
from .errors import SerecodecError
from .fileio import atomic_write_bytes
from .paths import MODELS_DIR

DEFAULT_NAME = "default"


class ModelNotFound(SerecodecError):
    """No model of that name, path or hash; the message says where it looked."""


def user_models_dir() -> Path:
    env = os.environ.get("SERECODEC_MODELS")
    if env:
        return Path(env).expanduser()
    return Path(user_data_dir("serecodec")) / "models"


def search_dirs() -> list:
    return [MODELS_DIR, user_models_dir()]


def _is_name(spec: str) -> bool:
    return "/" not in spec and "\\" not in spec and not spec.endswith((".pt", ".npz"))


def resolve_coding_model(spec=None) -> Path:
    """``None`` → the shipped default; a NAME → NAME.coding.npz in the model directories; a
    ``NAME.pt`` path → the ``NAME.coding.npz`` beside it; anything else → that path."""
    spec = DEFAULT_NAME if spec is None else str(spec)
    if _is_name(spec):
        for directory in search_dirs():
            if (directory / f"{spec}.coding.npz").is_file():
                return directory / f"{spec}.coding.npz"
        raise ModelNotFound(f"no model named {spec!r} (looked in {', '.join(map(str, search_dirs()))})")
    if spec.endswith(".pt"):
        return Path(spec[:-3] + ".coding.npz")
    return Path(spec)


def resolve_weights(spec=None) -> Path:
    """The float weight file (``.pt``) of a NAME (shipped or installed) or a path."""
    spec = DEFAULT_NAME if spec is None else str(spec)
    if _is_name(spec):
        for directory in search_dirs():
            if (directory / f"{spec}.pt").is_file():
                return directory / f"{spec}.pt"
    return Path(spec)


def card_path(coding_path: Path) -> Path:
    return Path(str(coding_path).removesuffix(".coding.npz") + ".json")


def write_card(coding_path: Path, **fields) -> dict:
    """Write NAME.json beside NAME.coding.npz: what ``models`` lists and hash lookup reads."""

    model = load_coding_model(coding_path)
    card = {"name": Path(coding_path).name.removesuffix(".coding.npz"), "hash": model.hash,
            "tile": list(model.tile_shape), "variant": model.meta.get("variant"),
            "bytes": Path(coding_path).stat().st_size, **fields}
    atomic_write_bytes(card_path(coding_path), (json.dumps(card, indent=2) + "\n").encode())
    return card


def models() -> list:
    """Index cards of every coding model in the model directories (shipped first)."""
    cards = []
    for directory in search_dirs():
        for coding in sorted(directory.glob("*.coding.npz")) if directory.is_dir() else []:
            try:
                card = json.loads(card_path(coding).read_text())
            except (OSError, ValueError):
                card = None
            if not isinstance(card, dict) or "hash" not in card:
                try:
                                    model = load_coding_model(coding)
                except SerecodecError:
                    continue
                card = {"name": coding.name.removesuffix(".coding.npz"), "hash": model.hash,
                        "tile": list(model.tile_shape), "bytes": coding.stat().st_size}
            cards.append({**card, "path": str(coding), "shipped": directory == MODELS_DIR})
    return cards


def find_by_hash(prefix: str) -> Optional[Path]:
    """The coding model whose content hash starts with ``prefix`` (what an archive stores)."""
    for card in models():
        if str(card["hash"]).startswith(prefix):
            return Path(card["path"])
    return None


def install(weights: Path, name: str, force: bool = False) -> Path:
    """Copy NAME.pt, NAME.coding.npz and NAME.json into the user model directory."""
    target_dir = user_models_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    weights = Path(weights)
    sources = [weights, resolve_coding_model(str(weights)), card_path(resolve_coding_model(str(weights)))]
    targets = [target_dir / f"{name}.pt", target_dir / f"{name}.coding.npz", target_dir / f"{name}.json"]
    for target in targets:
        if target.exists() and not force:
            raise SerecodecError(f"{target}: already exists (use -f to overwrite)")
    for source, target in zip(sources, targets):
        if source.exists():
            shutil.copyfile(source, target)
    card = json.loads(targets[2].read_text()) if targets[2].exists() else {}
    card["name"] = name
    targets[2].write_text(json.dumps(card, indent=2) + "\n")
    return targets[1]
