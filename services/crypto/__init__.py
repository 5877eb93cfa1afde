"""sealcam crypto service (see README.md beside this file)."""
