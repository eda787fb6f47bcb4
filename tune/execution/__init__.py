"""Running a study on Ray: Tuner, trials, storage, progress, MLflow runs, cluster."""
