"""Benchmarks that print numbers and write them to a file (run on the hardware they measure).

    python -m recurlab.bench.huginn --device cuda --out bench-results/huginn.json
"""
