"""Keys: the owner's identities and recipients, the hub's signing key, and their text encodings."""
