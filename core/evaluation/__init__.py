"""Evaluation: R10/RALL metrics, candidate sets, the popularity floor, multi-reference ranks."""
