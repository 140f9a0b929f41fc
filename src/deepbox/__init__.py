"""deepbox: a hardened, SSH-reachable ML development box in Docker."""

__version__ = "0.1.0"
