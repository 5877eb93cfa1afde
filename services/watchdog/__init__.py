"""sealcam watchdog service (see README.md beside this file)."""
