"""``rapid_analysis serve``: the page that shows the night as it happens (read-only).

Modules: `app` (routes and pages), `live` (the CSCs' events from DDS, to browsers), `files`
(which product files may be served), `plots` (the Trends plots), `server` (uvicorn, in the
foreground or a background thread) and `queries` (what the pages read from the results
database). Nothing is imported here, so that importing one part does not import the others.
"""
