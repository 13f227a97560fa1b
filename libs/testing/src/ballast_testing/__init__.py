"""Throwaway servers on loopback for the tests and the benchmarks (`servers`, `s3`, `api`)."""
