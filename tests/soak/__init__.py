"""Soak tests: long churn runs that check the nodes come back to their baseline (issue 5)."""
