"""Shared test support (fakes, wait helpers, harnesses) for every test tier and bench/."""
