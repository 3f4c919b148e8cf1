"""anndl: breast-cancer subtype classification from H&E tiles (Keras 3)."""
