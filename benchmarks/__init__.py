"""Benchmark harness: aioworker side by side with uvicorn, granian, hypercorn and gunicorn.

Run it with `python -m benchmarks` (or `scripts/bench`); `--help` lists the options.
"""
