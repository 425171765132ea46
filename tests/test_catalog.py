"""Unit tests: parsing the dirty Kaggle styles.csv and the derived price."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashion_catalog.catalog.parser import CatalogFormatError, derive_price, parse_line, parse_styles_csv

FIXTURE = Path(__file__).parent / "fixtures" / "dirty_styles.csv"


def test_unquoted_commas_in_display_name_are_kept_whole():
    parsed = parse_styles_csv(FIXTURE)
    by_id = {r["product_id"]: r for r in parsed.rows}
    assert by_id[44065]["product_display_name"] == "Boss Men Perfume, After Shave Balm and Shower Gel Set"
    assert by_id[3413]["product_display_name"] == "Myntra Men's Yes, its all about me White T-shirt"
    assert by_id[23124]["product_display_name"] == "Converse Unisex Navy Blue Liv,Laugh,Love Flip-flops"
    assert by_id[23124]["usage"] == "Casual" and by_id[23124]["year"] == 2013
    assert by_id[7491]["product_display_name"] == "Nike Women's EM Tempo 3.5\" Pink Short"
    assert by_id[90001]["product_display_name"] == 'Quoted, "Name" Dress'
    assert by_id[90004]["product_display_name"] == "Windows Line Ending Heels"


def test_empty_fields_become_null_not_lost():
    by_id = {r["product_id"]: r for r in parse_styles_csv(FIXTURE).rows}
    assert by_id[53781]["season"] is None and by_id[53781]["year"] is None
    assert by_id[28319]["usage"] is None
    assert by_id[15970]["image_path"].endswith("/images/15970.jpg")


def test_only_unparseable_lines_are_quarantined_with_reasons():
    parsed = parse_styles_csv(FIXTURE)
    assert sorted(r["product_id"] for r in parsed.rows) == [
        3413, 7491, 15970, 23124, 28319, 44065, 53781, 90001, 90004]
    reasons = {line: reason for line, _raw, reason in parsed.quarantined}
    assert reasons == {
        11: "id 'abc' is not an integer",
        12: "expected 10 fields, found 4",
        13: "year 'twenty' is not a number",
        14: "duplicate product_id 15970 (first at line 2)",
    }


def test_wrong_header_is_rejected(tmp_path):
    bad = tmp_path / "styles.csv"
    bad.write_text("id,name\n1,x\n")
    with pytest.raises(CatalogFormatError, match="header must be id,gender"):
        parse_styles_csv(bad)


def test_price_is_deterministic_and_within_band():
    prices = [derive_price(i, "Apparel") for i in range(10000, 10500)]
    assert prices == [derive_price(i, "Apparel") for i in range(10000, 10500)]
    assert all(12.0 <= p <= 151.0 and round(p % 1, 2) == 0.99 for p in prices)
    assert len(set(prices)) > 50
    row = parse_line("1,Men,Footwear,Shoes,Casual Shoes,Black,Fall,2012,Casual,X")
    assert row["price"] == derive_price(1, "Footwear")
