"""The streams contract: stream and key names (names.py) and versioned message types (contract.py)."""
