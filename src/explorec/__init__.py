"""explorec: exploration vs exploitation with a language-model item tower."""

__version__ = "0.1.0"
