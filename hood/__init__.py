"""hood: heatmap-based out-of-distribution detection (Hornauer & Belagiannis, WACV 2023)."""

__version__ = "0.1.0"
