"""corral's benchmarks: one module per benchmark, each measuring corral beside a
baseline in the same run; ``bench/run`` runs them all and prints one table.

Not installed with corral: run from the repository (``bench/run``, or
``python -m bench.<name>`` with the repository root on the path).
"""
