"""sealcam: sealed (encrypted, signed, hash-chained) security camera footage.

The core library shared by the services, the CLI and the viewer. Services never import each
other; they import this package only.
"""

__version__ = "0.1.0"
