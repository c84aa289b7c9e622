"""Synthetic stacks with ground truth (demo, tests, benches) and their textures."""
