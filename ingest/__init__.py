"""cdr-ingest: collect carrier billing files, hold potential duplicates, load each record exactly once.

The pipeline, one room each: ``collectors/`` fetch bytes -> ``intake`` (the one door) stages and
fingerprints them and records them in the ``catalog`` -> ``carriers`` parse them -> ``load`` writes the
records, all or nothing.
"""

__version__ = "0.1.0"
