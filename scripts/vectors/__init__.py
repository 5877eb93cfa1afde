"""Generator of sealcam's container test vectors (tests/vectors/). Entry point: scripts/make_vectors.py."""
