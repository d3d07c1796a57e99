"""memokit's benchmark harness: memokit beside its peers and the raw floors, in one run.

Run ``python -m benchmarks`` (all sections, about 10 minutes) or
``python -m benchmarks --quick`` (under 2 minutes); name sections to run only
those (``python -m benchmarks memory hits``; ``--list`` shows them). A run writes
its raw results as JSON and renders them as Markdown with plots, under
``benchmarks/results/`` (not tracked); ``--update-docs`` writes a run of every
section to the tracked ``benchmarks/results/benchmarks.json`` and ``docs/benchmarks.md``.
"""
