"""The command line: parses options, calls jobs, renders results. The only layer that prints."""
