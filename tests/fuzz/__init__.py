"""Fuzz tests: hypothesis properties of every pure parser, hostile bytes on a live comet's listeners, and the
web API generated from docs/openapi.yaml (schemathesis). Budgets and how to run longer: tests/fuzz/budget.py."""
