"""Benchmarks of this project (not installed: run them from the repository root, where this
package is found); see docs/BENCHMARKS.md and the module table in docs/DESIGN.md."""
