"""The engine: everything that touches tensors. Nothing here prints; progress goes through callbacks."""
