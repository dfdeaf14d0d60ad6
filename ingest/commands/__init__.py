"""The ``cdr`` commands beyond the catalog's own, one module per subject, each registered on :data:`ingest.cli.cli`
when :mod:`ingest.cli` is imported. Like ``cli.py`` they are thin: they call the library and format what it
returns, importing the library inside each command so that ``cdr --help`` stays light."""
