"""Training: what both trainers share (seeded start, batch order) and the NumPy trainer beside
its PyTorch twin."""
