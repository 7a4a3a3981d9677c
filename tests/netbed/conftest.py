from .fixtures import netbed

__all__ = ["netbed"]
