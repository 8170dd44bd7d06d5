"""Runs around the loop: task files and their checks, batches (local and on Ray), reports and the demo."""
