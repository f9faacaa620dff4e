"""Tests of the pyvisor runner (python/pyvisor/); run from the repository root with
``python3 -m unittest discover -s tests/python -t .``."""
