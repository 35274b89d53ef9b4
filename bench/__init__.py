"""Benchmark of besmart-server against InfluxDB 1.x and VictoriaMetrics (issue 5).

Run it with ``python -m bench.run [--quick]``; see ``bench/README.md``.
"""
