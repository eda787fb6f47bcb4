"""Benchmarks of this project; not part of the installed library.

Run them from the repository root (the directory is a package, found on the path there):

    python -m benchmarks.train_step --quick     # training step: reference vs optimised path
    python -m benchmarks.loader                 # the training loader's samples/s

- `benchmarks.train_step`: the CLI; `benchmarks.configs`: cases, presets and the `TrainConfig`
  of each path; `benchmarks.timing`: one timed run through
  `ttsr.train.trainer.build_trainer` and the training loop's per-batch code; `benchmarks.jobs`:
  child processes and packed trials; `benchmarks.report`: tables and GPU targets.
- `benchmarks.loader`: DataLoader throughput and where an item's time goes.

See docs/BENCHMARKS.md.
"""
