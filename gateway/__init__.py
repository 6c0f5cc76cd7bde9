"""Clinic gateway: an NFQUEUE inspection pipeline with a zone firewall, IDS/IPS and content filters."""
__version__ = "0.1.0"
