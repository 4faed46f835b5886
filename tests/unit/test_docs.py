"""The placement table in docs/architecture.md is the catalog's, not a hand-kept copy."""

from __future__ import annotations

import re

from labctl import catalog
from tests.conftest import ROOT


def test_placement_table_matches_the_catalog(inventory_copy):
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- placement:begin -->\n(.*?)<!-- placement:end -->", doc, re.S)
    assert block, "docs/architecture.md lost its placement markers"
    assert block.group(1) == catalog.placement_markdown(inventory_copy.load()), (
        "docs/architecture.md is out of date: paste `labctl services --markdown` between the markers"
    )
