"""Reproducible bilevel test images of the kinds users hold: text pages, scanned-looking pages,
QR codes, line art, dithered pictures and digits at other sizes.

The bilevel benchmark codes one seed's images; the adaptive model's initial counts are fitted on
other seeds, so the benchmark never measures images the table was fitted on. Text comes from
the DejaVu fonts where the machine has them, else Pillow's built-in font.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif-Italic.ttf")
WORDS = ("the of and to in is was for that with as on by at from this his which are or be an had not but "
         "codec image lossless bits entropy model stack coder page scan layer prior posterior pixel tile "
         "archive format header checksum JBIG fax document letter invoice total amount date 2026 1234 "
         "Table Figure Section results measured rate bound variational hierarchy").split()
CATEGORIES = ("text", "scan", "qr", "lineart", "dither", "digits")


def _font(name: str, size: int):
    path = FONT_DIR / name
    if path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _to_bits(img: Image.Image) -> np.ndarray:
    """1 = ink: black print on white paper becomes 1 where dark."""
    return (np.asarray(img.convert("L")) < 128).astype(np.uint8)


def text_page(rng: np.random.Generator, size=(1240, 1754), font_size: int = 24) -> np.ndarray:
    width, height = size
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    font = _font(FONTS[int(rng.integers(len(FONTS)))], font_size)
    margin, y, line = width // 12, height // 14, int(font_size * 1.4)
    while y < height - height // 14 - line:
        if rng.random() < 0.08:       # paragraph break
            y += line
            continue
        x = margin
        text = ""
        while True:
            word = WORDS[int(rng.integers(len(WORDS)))]
            candidate = (text + " " + word).strip()
            if draw.textlength(candidate, font=font) > width - 2 * margin:
                break
            text = candidate
        draw.text((x, y), text, fill=0, font=font)
        y += line
    return _to_bits(img)


def scanned_page(rng: np.random.Generator, size=(1240, 1754)) -> np.ndarray:
    """A text page printed, blurred, skewed a little, noised and thresholded like a cheap scan."""
    page = 255 - 255 * text_page(rng, size, font_size=int(rng.integers(18, 30)))
    img = Image.fromarray(page.astype(np.uint8)).rotate(float(rng.uniform(-1.5, 1.5)), fillcolor=255)
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 1.2))))
    grey = np.asarray(img, dtype=np.float64) + rng.normal(0, 18, (size[1], size[0]))
    return (grey < 140).astype(np.uint8)


def qr_code(rng: np.random.Generator, scale: int = 4) -> np.ndarray:
    import segno           # (a test and benchmark dependency, for QR codes only)

    text = " ".join(WORDS[int(i)] for i in rng.integers(len(WORDS), size=int(rng.integers(3, 30))))
    code = segno.make(text, error="m")
    return np.kron(np.array(code.matrix, dtype=np.uint8), np.ones((scale, scale), np.uint8))


def line_art(rng: np.random.Generator, size=(800, 600)) -> np.ndarray:
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    width, height = size
    for _ in range(int(rng.integers(20, 60))):
        kind = rng.integers(4)
        box = sorted(rng.integers(0, width, 2).tolist()), sorted(rng.integers(0, height, 2).tolist())
        xy = [box[0][0], box[1][0], box[0][1], box[1][1]]
        stroke = int(rng.integers(1, 5))
        if kind == 0:
            draw.line(xy, fill=0, width=stroke)
        elif kind == 1:
            draw.ellipse(xy, outline=0, width=stroke)
        elif kind == 2:
            draw.rectangle(xy, outline=0, width=stroke)
        else:
            points = [tuple(p) for p in rng.integers(0, min(size), (int(rng.integers(3, 7)), 2)).tolist()]
            draw.polygon(points, outline=0, width=stroke)
    return _to_bits(img)


def dithered(rng: np.random.Generator, size=(512, 384)) -> np.ndarray:
    """A smooth grey picture (blobs and gradients) Floyd–Steinberg dithered (Pillow's convert("1"))."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width] / max(size)
    grey = 0.5 + 0.3 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(4 * yy + rng.uniform(0, 6))
    for _ in range(6):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 0.75), rng.uniform(0.05, 0.25)
        grey += rng.uniform(-0.4, 0.4) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r ** 2)
    img = Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).convert("1")
    return 1 - np.asarray(img, dtype=np.uint8)


def resized_digits(digits: np.ndarray, side: int) -> list:
    """28x28 binary digits resampled to ``side`` x ``side`` (nearest neighbour keeps them bilevel)."""
    return [np.asarray(Image.fromarray(d.reshape(28, 28).astype(np.uint8) * 255).resize((side, side), Image.BILINEAR))
            .__ge__(128).astype(np.uint8) for d in digits]


def image_set(seed: int, digits: np.ndarray, scale: float = 1.0) -> dict:
    """{category: [images]} for one seed; ``scale`` < 1 shrinks pages for quick runs."""
    rng = np.random.default_rng(seed)
    page = (int(1240 * scale), int(1754 * scale))
    return {
        "text": [text_page(rng, page, fs) for fs in (16, 24, 36)],
        "scan": [scanned_page(rng, page) for _ in range(2)],
        "qr": [qr_code(rng, s) for s in (2, 4, 6, 8)],
        "lineart": [line_art(rng, (int(800 * scale), int(600 * scale))) for _ in range(3)],
        "dither": [dithered(rng, (int(512 * scale), int(384 * scale))) for _ in range(2)],
        "digits": [img for side in (20, 32, 56) for img in resized_digits(digits[:20], side)],
    }


GLYPH_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz&@#%?!$+=<>{}[]()/*"


def glyphs(rng: np.random.Generator, count: int, side: int = 28) -> np.ndarray:
    """``count`` binarized glyphs (letters and symbols, no digits) of ``side`` x ``side``: random
    font, size, offset and a slight rotation, white ink (1) on black as in MNIST."""
    fonts = {}
    out = np.zeros((count, side, side), np.uint8)
    for i in range(count):
        name = FONTS[int(rng.integers(len(FONTS)))]
        size = int(rng.integers(side // 2, side - 4))
        font = fonts.setdefault((name, size), _font(name, size))
        char = GLYPH_CHARS[int(rng.integers(len(GLYPH_CHARS)))]
        img = Image.new("L", (side * 2, side * 2), 0)
        draw = ImageDraw.Draw(img)
        box = draw.textbbox((0, 0), char, font=font)
        x = side - (box[0] + box[2]) // 2 + int(rng.integers(-2, 3))
        y = side - (box[1] + box[3]) // 2 + int(rng.integers(-2, 3))
        draw.text((x, y), char, fill=255, font=font)
        img = img.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR)
        crop = np.asarray(img)[side // 2:side // 2 + side, side // 2:side // 2 + side]
        out[i] = crop >= 128
    return out
