"""A run's reports: the metrics CSV and TensorBoard, the summary table, the figures, the spectra files."""
