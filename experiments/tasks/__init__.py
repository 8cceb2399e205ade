"""What a task supplies to the run: its data, the model it builds, its metrics, its input contract."""
