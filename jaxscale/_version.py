"""The package version (one place: read by ``jaxscale.__version__`` and saved models)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
