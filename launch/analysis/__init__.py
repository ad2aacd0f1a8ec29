"""What reads finished runs, for launch/plot.py: the runs under a dir and their curves (runs.py), curves
averaged by a swept value with bootstrap bands, their figure and end-of-phase table (curves.py), the paper's
published curves (paper.py) drawn beside the runs (overlays.py), and rliable's statistics (aggregate.py) over
runs x tasks (aggregate_report.py). It reads a run's files only; it never imports the engine.
"""
