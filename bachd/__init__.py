"""bachd: a real-time Bach chorale generator for your DAW."""

__version__ = "0.2.0"
