"""sealcam uploader service (see README.md beside this file)."""
