"""End-to-end: the web page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)."""

from __future__ import annotations

import os
import shutil

import pytest

from fashion_catalog.app.main import create_app
from fashion_catalog.personalization.features import build_user_features
from fashion_catalog.streaming.runner import Embedder
from tests.conftest import make_config
from tests.helpers import ThreadServer, append_products, draw_image, product, stream_once
from tests.test_api import CATALOG

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT_DIR = os.environ.get("SCREENSHOT_DIR")

if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(spark, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    config = make_config(str(root), tiny_model_dir)
    rows = [product(pid, draw_image(f"{root}/img/{pid}.jpg", pid), article_type=art, base_color=col, price=price,
                    gender=gender, master_category=master, product_display_name=f"Demo {gender} {col} {art}")
            for pid, art, col, price, gender, master in CATALOG]
    append_products(spark, config, rows)
    stream_once(Embedder(spark, config))
    build_user_features(spark, config)
    served = ThreadServer(create_app(config))
    yield served.url, root
    served.stop()


def test_search_recommend_and_errors_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, root = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        page.wait_for_function("document.querySelector('#persona').options.length > 5")
        assert f"{len(CATALOG)} products" in page.inner_text("#health")
        # Text search with a price filter, run by pressing Enter in the search box.
        page.fill("#query", "red dress")
        page.fill("#max-price", "100")
        page.press("#query", "Enter")
        page.wait_for_selector(".card")
        cards = page.query_selector_all(".card")
        assert 0 < len(cards) <= 10
        prices = [float(c.query_selector(".meta").inner_text().split("$")[-1]) for c in cards]
        assert all(p <= 100 for p in prices)
        assert page.evaluate("document.querySelector('.card img').naturalWidth") > 0  # product image served
        # "More like this" on a card: the product's own image vector, the product itself left out.
        first = int(cards[0].get_attribute("data-product-id"))
        cards[0].query_selector(".more").click()
        page.wait_for_function("document.querySelector('#status').textContent.includes('like')")
        similar = [int(c.get_attribute("data-product-id")) for c in page.query_selector_all(".card")]
        assert similar and first not in similar and "image index" in page.inner_text("#status")
        # The empty state: a filter nothing matches.
        page.fill("#max-price", "1")
        page.press("#query", "Enter")
        page.wait_for_selector("#results .empty")
        assert "No products match" in page.inner_text("#results") and not page.query_selector_all(".card")
        assert page.get_attribute("#results", "aria-busy") == "false"
        page.fill("#max-price", "")
        # The query read as a shopper means it, shown as chips; Enter in another field searches too.
        page.fill("#query", "black dresses for women under 100")
        page.press("#min-price", "Enter")
        page.wait_for_function("document.querySelector('#chips').textContent.includes('price filter')")
        chips = page.inner_text("#chips")
        assert "price filter" in chips and "under 100" in chips and "gender filter" in chips
        assert "colour boost" in chips and "type boost" in chips
        cards = page.query_selector_all(".card")
        metas = [c.query_selector(".meta").inner_text() for c in cards]
        assert metas and all(float(m.split("$")[-1]) < 100 and "Women" in m for m in metas), metas
        assert cards[0].get_attribute("data-product-id") == "12"  # the black dress under 100
        assert "fused" in page.inner_text("#status")
        # Removing the price chip searches again without it (the luxury red dress at 300 comes back).
        page.click('#chips .chip[data-phrase="under 100"] button')
        page.wait_for_function("!document.querySelector('#chips').textContent.includes('price filter')")
        page.wait_for_selector('.card[data-product-id="5"]')
        assert "gender filter" in page.inner_text("#chips")
        # The mode selector: keyword search only.
        page.select_option("#mode", "keyword")
        page.click("#search-btn")
        page.wait_for_function("document.querySelector('#status').textContent.includes('keyword index')")
        page.select_option("#mode", "")
        page.fill("#max-price", "100")
        # Photo + text (hybrid) search with the weight slider.
        photo = os.path.join(root, "img", "5.jpg")
        page.set_input_files("#photo", photo)
        page.fill("#weight", "0.2")
        page.click("#search-btn")
        page.wait_for_function("document.querySelector('#status').textContent.includes('hybrid')")
        # Persona recommendations.
        page.fill("#max-price", "")
        page.select_option("#persona", "user_008828")
        page.click("#recommend-btn")
        page.wait_for_function("document.querySelector('#status').textContent.includes('hybrid index')")
        ids = sorted(int(c.get_attribute("data-product-id")) for c in page.query_selector_all(".card"))
        assert ids == [5, 6]
        shot = tmp_path / "search-page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if SCREENSHOT_DIR:
            os.makedirs(SCREENSHOT_DIR, exist_ok=True)
            shutil.copy(shot, os.path.join(SCREENSHOT_DIR, "search-page.png"))
        # A bad request shows the service's message.
        page.set_input_files("#photo", [])
        page.fill("#query", "")
        page.click("#search-btn")
        page.wait_for_selector("#status.error")
        assert "query text is empty" in page.inner_text("#status")
        browser.close()
