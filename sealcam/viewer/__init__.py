"""The owner's viewer: a local web app that verifies, decrypts and plays sealed footage (docs/design/viewer.md)."""
