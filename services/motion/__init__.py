"""sealcam motion service (see README.md beside this file)."""
