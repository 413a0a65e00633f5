"""The benchmark suite behind `robustgrid bench` (issue 5): B1-B6, one table. See workers.bench.suite."""
