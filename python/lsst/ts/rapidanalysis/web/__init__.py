"""``rapid_analysis serve``: the page that shows the night as it happens (read-only).

Modules: `app` (routes and pages), `formatting` (how values and the night table's rows are
written), `security` (GET/HEAD only, the headers of every response), `source` (the results
database, opened on first use), `queries` (what the pages read from it), `live` (the CSCs'
events from DDS, to browsers), `files` (which product files may be served), `plots` (the Trends
plots), `server` (uvicorn, in the foreground or a background thread), `serve_cli` (the
subcommand), `sample_night` (a generated night for tests, screenshots and benchmarks) and
`browser` (Debian's headless Chromium, as those drive it).
Nothing is imported here, so that importing one part does not import the others.
"""
