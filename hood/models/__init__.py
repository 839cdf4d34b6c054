"""Classifiers, the heatmap decoder, and their checkpoint I/O."""
