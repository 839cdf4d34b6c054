"""Data: the registry of named sets, readers for folders and archives, built-in sets, transforms."""
