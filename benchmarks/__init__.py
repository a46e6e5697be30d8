"""pushcluster benchmark suite: starts its own servers on loopback, drives them with a multi-process load
generator, and reports each figure against the targets of issue 3, next to a bare tornado baseline.

Run everything with ``python -m benchmarks`` (``--quick`` for a smoke run), or one scenario with
``python -m benchmarks SCENARIO --help``. Results (JSON and PNG) go to ``benchmarks/results/``; the
method and the latest figures are described in ``docs/benchmarks.md``. Nothing here runs under pytest.

Modules: ``harness`` (server processes, ports, configs, RSS/CPU), ``loadgen`` (the worker pool),
``worker`` / ``subclient`` / ``httpclient`` (what runs inside a load-generator process), ``baseline`` (the
bare tornado server), ``report`` (table, JSON, PNG), and one module per scenario.
"""
