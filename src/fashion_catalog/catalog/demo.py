"""Generate a small synthetic catalog in the Kaggle layout, with drawn product images.

Used by the local demo (and tests): no real data needed. It deliberately holds
one display name with unquoted commas (like the real file) and one product whose
image file is missing, so the demo shows both being handled.
"""

from __future__ import annotations

import os
import random

from PIL import Image, ImageDraw

COLOURS = {
    "Black": (20, 20, 20), "White": (245, 245, 245), "Red": (200, 30, 40), "Navy Blue": (20, 30, 90),
    "Blue": (40, 90, 200), "Green": (40, 140, 60), "Yellow": (235, 200, 40), "Pink": (240, 140, 180),
    "Brown": (120, 75, 40), "Grey": (128, 128, 128), "Purple": (110, 50, 140), "Beige": (220, 200, 160),
}
# article type -> (master category, sub category, usage, how to draw it)
ARTICLES = {
    "Tshirts": ("Apparel", "Topwear", "Casual", "tshirt"),
    "Shirts": ("Apparel", "Topwear", "Formal", "tshirt"),
    "Dresses": ("Apparel", "Dress", "Party", "dress"),
    "Jeans": ("Apparel", "Bottomwear", "Casual", "trousers"),
    "Casual Shoes": ("Footwear", "Shoes", "Casual", "shoe"),
    "Sports Shoes": ("Footwear", "Shoes", "Sports", "shoe"),
    "Watches": ("Accessories", "Watches", "Casual", "watch"),
    "Handbags": ("Accessories", "Bags", "Casual", "bag"),
}
# How one product of each type is named, as real display names read ("Puma Men Black Watch", "... Jeans").
NAMES = {"Tshirts": "Tshirt", "Shirts": "Shirt", "Dresses": "Dress", "Jeans": "Jeans", "Casual Shoes": "Casual Shoes",
         "Sports Shoes": "Sports Shoes", "Watches": "Watch", "Handbags": "Handbag"}
BRANDS = ["Aurora", "Northwind", "Velvet Lane", "Kestrel", "Urban Fox", "Maple & Co"]
GENDERS = ["Men", "Women", "Unisex"]
SEASONS = ["Summer", "Fall", "Winter", "Spring"]
HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"


def draw_product(kind: str, colour: tuple[int, int, int], size: int = 224, seed: int = 0) -> Image.Image:
    """A simple drawing of a product of ``kind`` in ``colour`` on a light background."""
    rnd = random.Random(seed)
    bg = tuple(min(255, 235 + rnd.randint(0, 20)) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    s = size / 224
    def box(*xy):
        return [v * s for v in xy]
    if kind == "tshirt":
        d.polygon(box(62, 40, 162, 40, 200, 80, 175, 100, 160, 85, 160, 190, 64, 190, 64, 85, 49, 100, 24, 80),
                  fill=colour)
    elif kind == "dress":
        d.polygon(box(92, 30, 132, 30, 140, 80, 185, 200, 39, 200, 84, 80), fill=colour)
    elif kind == "trousers":
        d.polygon(box(70, 30, 154, 30, 160, 200, 120, 200, 112, 90, 104, 200, 64, 200), fill=colour)
    elif kind == "shoe":
        d.polygon(box(30, 150, 110, 110, 150, 120, 195, 150, 195, 175, 30, 175), fill=colour)
        d.rectangle(box(30, 170, 195, 182), fill=(60, 60, 60))
    elif kind == "watch":
        d.rectangle(box(95, 20, 129, 204), fill=(70, 70, 70))
        d.ellipse(box(72, 72, 152, 152), fill=colour, outline=(40, 40, 40), width=int(6 * s))
    else:  # bag
        d.arc(box(75, 30, 149, 110), 180, 360, fill=(60, 60, 60), width=int(8 * s))
        d.rounded_rectangle(box(45, 70, 179, 190), radius=int(12 * s), fill=colour)
    return img


def generate_demo_catalog(out_dir: str, n_products: int = 48, seed: int = 7, missing_image_ids: int = 1) -> str:
    """Write ``styles.csv`` and ``images/<id>.jpg`` for ``n_products`` products; returns ``out_dir``."""
    rnd = random.Random(seed)
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    lines = [HEADER]
    articles, colours = list(ARTICLES), list(COLOURS)
    for i in range(n_products):
        pid = 1001 + i
        article = articles[i % len(articles)]
        colour = colours[(i * 5 + i // len(articles)) % len(colours)]
        master, sub, usage, kind = ARTICLES[article]
        gender = "Women" if article in ("Dresses", "Handbags") else rnd.choice(GENDERS)
        brand = rnd.choice(BRANDS)
        name = f"{brand} {gender} {colour} {NAMES[article]}"
        if i == 3:  # like the real file: an unquoted comma in the last column
            name = f"{brand} {gender} {colour} Tie, Cufflink and Pocket Square Set"
        lines.append(",".join([str(pid), gender, master, sub, article, colour, rnd.choice(SEASONS),
                               str(2012 + rnd.randint(0, 6)), usage, name]))
        if i < n_products - missing_image_ids:
            image = draw_product(kind, COLOURS[colour], seed=pid)
            image.save(os.path.join(out_dir, "images", f"{pid}.jpg"), quality=90)
    with open(os.path.join(out_dir, "styles.csv"), "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(lines) + "\n")
    return out_dir


if __name__ == "__main__":
    import sys

    print(generate_demo_catalog(sys.argv[1] if len(sys.argv) > 1 else "data/demo_catalog"))
