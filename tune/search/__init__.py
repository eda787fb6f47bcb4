"""Searched studies: the Optuna storage, the stored searcher, seed repeats."""
