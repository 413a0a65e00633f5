"""Benchmarks that drive the service (store sweeps through service.submission and run them with the real driver):
the search benchmark (service.bench.search). The torch micro-benchmarks of `robustgrid bench` live in workers.bench."""
