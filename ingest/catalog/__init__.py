"""The catalog: which files arrived, what became of them, and the records loaded from them."""

from .db import Catalog, describe_url

__all__ = ["Catalog", "describe_url"]
