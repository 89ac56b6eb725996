"""Benchmarks: scripts that measure the gateway and what it is compared with."""
