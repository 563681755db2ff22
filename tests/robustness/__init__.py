"""Robustness: kills, database faults, supervision, hostile input, load."""
