"""sealcam configuration: typed models, the YAML loader with located errors, and per-service sections."""

from .loader import ConfigError, Problem, default_config, load_config, parse_config
from .models import Camera, CameraInput, Config
from .secrets import SecretError, SecretRef
from .sections import SERVICES

__all__ = [
    "SERVICES",
    "Camera",
    "CameraInput",
    "Config",
    "ConfigError",
    "Problem",
    "SecretError",
    "SecretRef",
    "default_config",
    "load_config",
    "parse_config",
]
