"""Test suite for offline-bundle.

A package (rather than loose files) so test modules can share helpers as
``from tests.support.<module> import ...`` with pytest's default import mode.
"""
