"""A fixed probe set for choosing and checking an inference path: product-like photos and descriptions.

Drawn deterministically in code (no data files; the same on every machine): garments as
coloured shapes on light backgrounds with texture and noise, like catalogue packshots, and
descriptions in the catalogue's own format. ``model.precision: auto`` times every path on it
and keeps those whose vectors stay within cosine 0.999 of fp32 on every probe item;
``openvino-int8`` calibrates its quantisation on it.
"""

from __future__ import annotations

import numpy as np

COLOURS = {"Black": (20, 20, 24), "White": (240, 240, 236), "Navy Blue": (25, 35, 90), "Red": (190, 30, 40),
           "Green": (40, 120, 60), "Brown": (110, 70, 40), "Grey": (128, 128, 130), "Pink": (230, 150, 180),
           "Yellow": (230, 200, 40), "Blue": (40, 90, 200), "Beige": (220, 200, 170), "Purple": (110, 50, 140)}
ARTICLES = ["Tshirts", "Shirts", "Jeans", "Casual Shoes", "Watches", "Handbags", "Tops", "Kurtas", "Sports Shoes",
            "Dresses", "Sunglasses", "Belts", "Jackets", "Trousers", "Flip Flops", "Caps"]
GENDERS = ["Men", "Women", "Unisex", "Boys", "Girls"]
USAGES = ["Casual", "Formal", "Sports", "Ethnic", "Party"]
SEASONS = ["Summer", "Winter", "Fall", "Spring"]


def probe_images(n: int = 32, size: int = 224, seed: int = 0) -> list:
    """``n`` RGB PIL images of ``size`` x ``size``: product-like drawings, the same on every call."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    palette = list(COLOURS.values())
    images = []
    for i in range(n):
        background = tuple(int(v) for v in rng.integers(215, 256, 3))
        img = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(img)
        colour = palette[i % len(palette)]
        x0, y0 = rng.integers(size // 10, size // 3, 2)
        x1, y1 = rng.integers(2 * size // 3, size - size // 10, 2)
        shape = i % 4
        if shape == 0:  # a shirt: body and sleeves
            draw.rectangle((x0, y0, x1, y1), fill=colour)
            draw.polygon([(x0, y0), (x0 - size // 8, y0 + size // 4), (x0, y0 + size // 4)], fill=colour)
            draw.polygon([(x1, y0), (x1 + size // 8, y0 + size // 4), (x1, y0 + size // 4)], fill=colour)
        elif shape == 1:  # a shoe
            draw.ellipse((x0, (y0 + y1) // 2, x1, y1), fill=colour)
            draw.rectangle((x0, (y0 + y1) // 2 - size // 10, (x0 + x1) // 2, (y0 + y1) // 2 + size // 20), fill=colour)
        elif shape == 2:  # a watch or a bag
            draw.ellipse((x0, y0, x1, y1), outline=colour, width=max(2, size // 20))
            draw.rectangle(((x0 + x1) // 2 - size // 12, y0 - size // 8, (x0 + x1) // 2 + size // 12, y0), fill=colour)
        else:  # trousers
            mid = (x0 + x1) // 2
            draw.rectangle((x0, y0, mid - size // 40, y1), fill=colour)
            draw.rectangle((mid + size // 40, y0, x1, y1), fill=colour)
        for _ in range(int(rng.integers(2, 6))):  # stitching, prints, buttons
            cx, cy = rng.integers(x0, max(x0 + 1, x1), 1)[0], rng.integers(y0, max(y0 + 1, y1), 1)[0]
            r = int(rng.integers(2, size // 16))
            accent = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=accent)
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.2))))
        noise = rng.normal(0, 6, (size, size, 3))
        pixels = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels, "RGB"))
    return images


def probe_texts(n: int = 64, seed: int = 0) -> list[str]:
    """``n`` product descriptions in the catalogue's format, the same on every call."""
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    texts = []
    for i in range(n):
        colour, article = colours[i % len(colours)], ARTICLES[int(rng.integers(len(ARTICLES)))]
        gender, usage = GENDERS[int(rng.integers(len(GENDERS)))], USAGES[int(rng.integers(len(USAGES)))]
        season = SEASONS[int(rng.integers(len(SEASONS)))]
        words = " ".join(["Solid", "Printed", "Slim Fit", "Classic", "Leather", "Cotton"][int(j)]
                         for j in rng.integers(0, 6, int(rng.integers(1, 3))))
        tier = ["affordable", "mid-range", "premium", "luxury"][int(rng.integers(4))]
        texts.append(f"{words} {gender} {colour} {article}, {colour.lower()} {article.lower()}, apparel for "
                     f"{gender.lower()}, {usage.lower()} wear, {season.lower()} season, {tier} price")
    return texts
