"""Sphinx configuration for ts_rapidanalysis."""

project = "ts_rapidanalysis"
author = "Rubin Observatory Telescope & Site"
copyright = "2026, Rubin Observatory"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_numpy_docstring = True
exclude_patterns = ["_build"]
html_theme = "alabaster"
