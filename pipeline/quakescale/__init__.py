"""QuakeScale: earthquake catalogs from continuous waveforms at cluster scale."""

__version__ = "0.1.0"
