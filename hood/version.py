"""hood's version, on the ground floor: every layer may record it without importing the package's API."""

__version__ = "0.2.0"
