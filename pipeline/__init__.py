"""newsletter-pipeline: content modules -> rendered emails -> providers."""

__version__ = "0.1.0"
