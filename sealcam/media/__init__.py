"""Media helpers that work on compressed video without decoding it (e.g. splitting fragmented MP4)."""
