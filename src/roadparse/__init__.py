"""roadparse: unsupervised road parsing of drone imagery (the COMRP method)."""

__version__ = "0.1.0"
