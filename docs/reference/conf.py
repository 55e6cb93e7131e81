# Sphinx configuration of the module and role reference. scripts/docs generates the pages into
# .build/docs/rst from each module's DOCUMENTATION and each role's meta/argument_specs.yml (antsibull-docs),
# copies this file beside them and builds .build/docs/html; no page is written by hand.
project = "safeship.webapp"
html_title = "safeship.webapp reference"
html_theme = "alabaster"
# antsibull-docs links its pages from index.rst with references, not a toctree.
suppress_warnings = ["toc.not_included"]
# Options, values and messages are shown exactly as written (no typographic quotes or dashes).
smartquotes = False
