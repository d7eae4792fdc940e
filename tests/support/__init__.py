"""Shared helpers of the test tiers and the benchmarks (no tests here)."""
