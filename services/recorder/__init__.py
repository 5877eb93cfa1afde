"""sealcam recorder service (see README.md beside this file)."""
