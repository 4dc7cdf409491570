"""Shared helpers for the test suite: a real SeaweedFS, real gpg keys, and a
runner that invokes the Concourse assets the way Concourse does.

Fixtures that wrap these live in ``tests/conftest.py``; the modules here hold
the plain functions and classes so they can also be used outside pytest
(benchmarks, the demo, debugging from a REPL).
"""
