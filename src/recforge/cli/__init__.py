"""The ``recforge`` command line (thin: parse, call a stage, print)."""
