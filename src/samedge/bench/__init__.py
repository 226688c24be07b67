"""Latency benchmarks: per-stage timings, cold start, memory, roofline, same-run baselines, regression gate."""
