"""A sweep of ordinary runs: its points, its results table and its Pareto figures."""
