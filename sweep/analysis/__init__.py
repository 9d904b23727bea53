"""Robustness curves, sanity flags and plots, from result rows alone (pandas, no torch, no Ray)."""
