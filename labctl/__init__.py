"""labctl: one inventory, ten machines, one private AI platform."""

__version__ = "0.1.0"
