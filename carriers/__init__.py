"""Where a carrier's Python hook for a format lives.

How a carrier's files read is its format (a ``[formats.NAME]`` table, docs/formats.md), not code. For what a
format cannot say, it may name a hook, ``hook = "module:function"`` (for example ``hook =
"carriers.acme:fix_rows"`` for a function ``fix_rows`` in ``carriers/acme.py``); this package is the place
for such modules. No built-in format needs one, so it holds none.

The hook is imported when the format is compiled (``ingest.formats.engine.compile_format``: the loader, ``cdr
formats check`` and ``cdr doctor`` compile it); a module or function that does not load is a configuration
error at ``formats.NAME.hook``. It is then called once per block of rows of each file, before any field is
converted::

    def fix_rows(table: pyarrow.Table) -> pyarrow.Table

``table`` holds the block's columns as text (``pyarrow.string()``), named as the format names them (its
``columns``, header names or JSON keys; with ``column_names = "loose"``, the format's spelling of a known
column); a value is null where a JSON object leaves its key out. It returns the table to convert, with as
many rows: the same columns changed, or new ones (each is cast to text, then read by the format's fields like
any column of the file). To refuse a file, raise an ``ingest.errors.CdrError`` (``ParseError`` names a line
and field): the file fails with its one-line message, and ``cdr formats check`` shows it as the file's error.
Any other exception fails the file too when it is loaded, as an unexpected error.
"""
