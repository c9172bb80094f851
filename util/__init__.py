"""Shared utilities: errors, atomic files, devices, logging, HTML pages and result writing."""
