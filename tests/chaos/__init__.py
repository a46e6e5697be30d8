"""Fault tests: real processes killed and restarted under load, slow clients, slowloris, signals (issue 5)."""
