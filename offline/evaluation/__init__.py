"""Scoring what recommenders rank: ranking and explanation metrics, the benchmark tables, reports."""
