"""anndl: breast-cancer subtype classification from H&E tiles (Keras 3)."""
__version__ = "0.2.0"  # artifacts.version() records it (pyproject.toml: version)
