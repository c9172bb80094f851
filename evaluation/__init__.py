"""Evaluation of generated images: paired, distribution, texture and SAR speckle metrics (see evaluate.py)."""
