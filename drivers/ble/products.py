"""MiBeacon product ids -> model, name, manufacturer and the sleepy flag.

The table is ``xiaomi_product_ids.tsv`` beside this module (one row per product id; see
tests/vectors/README.md for its provenance), loaded once at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Product:
    product_id: int
    model: str
    name: str
    manufacturer: str
    #: Sends on change only (door, motion, flood ...): silence is not unavailability.
    sleepy: bool


def _load() -> dict[int, Product]:
    text = resources.files(__package__).joinpath("xiaomi_product_ids.tsv").read_text("utf-8")
    table: dict[int, Product] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if lineno == 1 or not line.strip():
            continue  # header
        pid, model, name, manufacturer, sleepy = line.split("\t")
        product = Product(int(pid, 16), model, name, manufacturer, sleepy.strip() == "True")
        if product.product_id in table:
            raise ValueError(f"duplicate product id {pid} in xiaomi_product_ids.tsv")
        table[product.product_id] = product
    return table


PRODUCTS: dict[int, Product] = _load()


def product(product_id: int) -> Product | None:
    return PRODUCTS.get(product_id)
