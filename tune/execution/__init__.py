"""Running a study on Ray: the Tuner, the trial function, the warm start, storage and the trial
record, progress lines, the MLflow parent run, the environment, the cluster connection, cluster
data preparation.
"""
