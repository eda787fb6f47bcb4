"""What a study is and what it will cost: experiments.yaml's schema, the resolved studies, the
plan, the preflight checks, the estimate and its measurement, the command-line options.
"""
