"""Fleet simulator and benchmarks (trio, a separate process from the server)."""
