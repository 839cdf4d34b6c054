"""Jobs: one function per command, turning a resolved config into files in a run directory.

They sit between the CLI (which parses and renders) and the engine (which computes): jobs load data and
checkpoints, call the engine, and write results atomically. Nothing here prints.
"""
