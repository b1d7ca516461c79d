"""``rapid_analysis serve``'s web application: the Now, Night, Image and Trends pages.

Read-only by construction: every route is GET (HEAD follows), any other method is a 405 before
routing (`security`), and no handler writes anything. Pages are rendered from the results database (through
`PageQueries`, in a thread: queries never run on the event loop) and from the live feed
(`LiveFeed`, DDS). Product files are served from under the output root only (`files`). Every
string is escaped by Jinja2's autoescape; the browser's Content-Security-Policy allows no inline
script, so even a string that escaped escaping could not run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import pathlib
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..results.database import ResultsDatabase
from . import formatting as fmt
from .files import product_href, resolve_product
from .live import LiveFeed, sse_message
from .security import ReadOnlyMiddleware
from .source import DatabaseUnavailable, PageSource

__all__ = ["create_app"]

_log = logging.getLogger(__name__)

PACKAGE_DIR = pathlib.Path(__file__).parent
TEMPLATE_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
#: Seconds of silence after which an event stream sends a comment (keeps proxies from closing it).
KEEPALIVE = 15.0
#: Newest nights of each instrument the Now page links to.
NIGHTS_LISTED = 7


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.ChainableUndefined,  # an event from an older interface lacks fields: shown empty
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt.num
    env.filters["utc"] = fmt.utc
    env.filters["seconds"] = fmt.seconds
    env.filters["q"] = fmt.q
    env.filters["http_url"] = fmt.http_url
    env.filters["size"] = fmt.size
    env.globals["image_href"] = fmt.image_href
    return env


def create_app(
    database: str | os.PathLike[str] | ResultsDatabase,
    output_root: str | os.PathLike[str],
    *,
    follow: Sequence[int] = (),
    allowed_hosts: Sequence[str] | None = None,
    queue_len: int = 500,
) -> Starlette:
    """The page's ASGI application.

    Parameters
    ----------
    database : `str`, path-like or `ResultsDatabase`
        The results database: a SQLAlchemy URL or a SQLite file path (opened on first use, never
        created), or an open `ResultsDatabase`.
    output_root : `str` or path-like
        The products' root directory: the only files served.
    follow : sequence of `int`
        SAL indices of the RapidAnalysis CSCs to follow live over DDS (1 LATISS, 2 LSSTComCam,
        3 LSSTCam); empty for none.
    allowed_hosts : sequence of `str`, optional
        Host headers accepted (others get a 400: a DNS rebinding page cannot read a loopback
        server); None for any.
    queue_len : `int`
        Live events each browser may have waiting before it is told it fell behind.

    Returns
    -------
    app : `starlette.applications.Starlette`
        ``app.state.feed`` is the `LiveFeed`, ``app.state.source`` the `PageSource`.
    """
    source = PageSource(database)
    root = pathlib.Path(output_root)
    env = _environment()

    def labels() -> list[str]:
        from .queries import HEADLINE_METRICS

        return list(HEADLINE_METRICS)

    def headline_names() -> list[str]:
        from .queries import HEADLINE_METRICS

        return list(HEADLINE_METRICS.values())

    def lookup_row(instrument: str, image_name: str) -> dict[str, Any] | None:
        row = source.queries().night_row(instrument, image_name)
        return None if row is None else fmt.night_row_payload(row, labels())

    feed = LiveFeed(follow, row_lookup=lookup_row, queue_len=queue_len)

    def render(name: str, context: Mapping[str, Any], status_code: int = 200) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    def nav(queries: Any | None) -> dict[str, Any]:
        instruments = list(feed.states)
        if queries is not None:
            instruments += [i for i in queries.instruments() if i not in instruments]
        return {"nav_instruments": instruments}

    async def page(build: Callable[[], Response]) -> Response:
        """Build a page in a thread (a missing database: `database_unavailable` answers)."""
        return await run_in_threadpool(build)

    def not_found(message: str) -> HTTPException:
        return HTTPException(404, message)

    async def now(request: Request) -> Response:
        def build() -> HTMLResponse:
            # The newest nights of each instrument in the database (all there is without DDS).
            nights: dict[str, list[int]] = {}
            problem = None
            try:
                queries = source.queries()
                extra = nav(queries)
                nights = {instrument: queries.days(instrument)[:NIGHTS_LISTED] for instrument in queries.instruments()}
            except DatabaseUnavailable as e:
                extra = nav(None)
                problem = str(e)
            context = {"snapshot": feed.snapshot(), "live": feed.live, "nights": nights, "problem": problem}
            return render("now.html", {"title": "Now", **context, **extra})

        return await page(build)

    def latest(kind: str) -> Callable[[Request], Any]:
        async def redirect(request: Request) -> Response:
            instrument = request.path_params["instrument"]

            def build() -> Response:
                days = source.queries().days(instrument)
                if not days:
                    raise not_found(f"no nights of {instrument} in the results database")
                return RedirectResponse(f"/{kind}/{fmt.q(instrument)}/{days[0]}", status_code=302)

            return await run_in_threadpool(build)

        return redirect

    def _night_data(instrument: str, day_obs: int) -> tuple[Any, list[Any], list[int]]:
        """The night's rows; a night with none yet is an empty table (it may be tonight)."""
        if not 19700101 <= day_obs <= 29991231:
            raise not_found(f"{day_obs} is not a dayObs (YYYYMMDD)")
        queries = source.queries()
        days = queries.days(instrument)
        rows = queries.night(instrument, day_obs)
        if not rows and not days and instrument not in feed.states and instrument not in queries.instruments():
            raise not_found(f"no images of {instrument} in the results database")
        return queries, rows, days

    async def night(request: Request) -> Response:
        instrument = request.path_params["instrument"]
        day_obs = request.path_params["day_obs"]

        def build() -> HTMLResponse:
            queries, rows, days = _night_data(instrument, day_obs)
            metric_labels = labels()
            columns = fmt.night_columns(metric_labels)
            older = [d for d in days if d < day_obs]
            newer = [d for d in days if d > day_obs]
            return render(
                "night.html",
                {
                    "title": f"{instrument} {day_obs}",
                    "instrument": instrument,
                    "day_obs": day_obs,
                    "columns": columns,
                    "rows": [fmt.night_row_html(r, fmt.night_cells(r, metric_labels), columns) for r in rows],
                    "previous_day": older[0] if older else None,
                    "next_day": newer[-1] if newer else None,
                    "live": instrument in feed.states,
                    **nav(queries),
                },
            )

        return await page(build)

    async def night_json(request: Request) -> Response:
        instrument = request.path_params["instrument"]
        day_obs = request.path_params["day_obs"]

        def build() -> JSONResponse:
            _, rows, _ = _night_data(instrument, day_obs)
            metric_labels = labels()
            return JSONResponse({"rows": [fmt.night_row_payload(r, metric_labels) for r in rows]})

        return await run_in_threadpool(build)

    async def night_csv(request: Request) -> Response:
        instrument = request.path_params["instrument"]
        day_obs = request.path_params["day_obs"]

        def build() -> Response:
            _, rows, _ = _night_data(instrument, day_obs)
            metric_labels = labels()
            fields = [
                "instrument",
                "image_name",
                "day_obs",
                "seq_num",
                "obs_time_utc",
                "image_type",
                "filter",
                "exposure_time",
                "state",
                "reason",
                "n_expected",
                "n_done",
                "n_failed",
                "n_dropped",
                *metric_labels,
                "latency_first_detector",
                "latency_visit_metrics",
            ]
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(fields)
            for row in rows:
                values = row.as_dict()
                values["obs_time_utc"] = fmt.utc(row.obs_time, "%Y-%m-%dT%H:%M:%S.%f")
                values.update({label: row.metrics.get(label) for label in metric_labels})
                writer.writerow([fmt.csv_cell(values.get(f)) for f in fields])
            filename = f"{instrument}_{day_obs}.csv"
            return Response(
                out.getvalue(),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{fmt.q(filename)}"'},
            )

        return await run_in_threadpool(build)

    async def image(request: Request) -> Response:
        instrument = request.path_params["instrument"]
        image_name = request.path_params["image_name"]

        def build() -> HTMLResponse:
            from ..data.camera import get_instrument

            queries = source.queries()
            found = queries.image(instrument, image_name)
            if found is None:
                raise not_found(f"no image {image_name} of {instrument} in the results database")
            products = []
            for product in found.products:
                href = product_href(root, product.get("path") or "")
                mime = product.get("mime_type") or ""
                path = str(product.get("path") or "")
                is_image = mime.startswith("image/") or path.lower().endswith((".png", ".jpg", ".jpeg", ".svg"))
                products.append({**product, "href": href, "is_image": is_image and href is not None})
            try:
                camera = get_instrument(instrument)
                name_of = {d.id: d.name for d in camera.detectors}
            except ValueError:
                name_of = {}
            metric_names = sorted({n for values in found.detector_metrics.values() for n in values})
            metric_labels = labels()
            return render(
                "image.html",
                {
                    "title": image_name,
                    "instrument": instrument,
                    "page": found,
                    "row": fmt.night_row_payload(found.row, metric_labels),
                    "columns": fmt.night_columns(metric_labels),
                    "products": products,
                    "detector_metric_names": metric_names,
                    "detector_rows": fmt.detector_rows_html(found.detector_metrics, metric_names, name_of),
                    "directories": sorted({str(pathlib.PurePath(p["path"]).parent) for p in products if p["path"]}),
                    **nav(queries),
                },
            )

        return await page(build)

    async def trends(request: Request) -> Response:
        instrument = request.path_params["instrument"]
        day_obs = request.path_params["day_obs"]
        params = request.query_params

        def build() -> HTMLResponse:
            queries, rows, days = _night_data(instrument, day_obs)
            names = queries.metric_names(instrument, day_obs)
            # By default a headline metric against time, and PSF FWHM on the focal plane.
            preferred = [m for m in headline_names() if m in names] + names
            metric = params.get("metric") or (preferred[0] if preferred else "")
            newest = max(rows, key=lambda r: (r.obs_time or 0.0, r.seq_num or 0), default=None)
            chosen_image = params.get("image") or (newest.image_name if newest else "")
            # The focal-plane choices are the chosen image's per-detector metrics.
            found = queries.image(instrument, chosen_image) if chosen_image else None
            detector_names = sorted({n for values in found.detector_metrics.values() for n in values}) if found else []
            detector_metric = params.get("detector_metric") or (
                "psfFwhm" if "psfFwhm" in detector_names else (detector_names[0] if detector_names else "")
            )
            query = urllib.parse.urlencode
            return render(
                "trends.html",
                {
                    "title": f"Trends {instrument} {day_obs}",
                    "instrument": instrument,
                    "day_obs": day_obs,
                    "metric_names": names,
                    "detector_metric_names": detector_names,
                    "metric": metric,
                    "images": [r.image_name for r in rows],
                    "image": chosen_image,
                    "detector_metric": detector_metric,
                    "days": days,
                    "trend_src": "/plot/trend.svg?"
                    + query({"instrument": instrument, "day_obs": day_obs, "metric": metric}),
                    "focal_plane_src": "/plot/focal_plane.svg?"
                    + query({"instrument": instrument, "image": chosen_image, "metric": detector_metric}),
                    **nav(queries),
                },
            )

        return await page(build)

    async def trend_plot(request: Request) -> Response:
        params = request.query_params
        instrument = params.get("instrument", "")
        metric = params.get("metric", "")
        try:
            day_obs = int(params.get("day_obs", ""))
        except ValueError:
            raise not_found("day_obs must be an integer such as 20251115") from None

        def build() -> Response:
            from .plots import SVG_MEDIA_TYPE, trend_svg

            points = source.queries().trend(instrument, day_obs, metric)
            svg = trend_svg(points, metric, f"{instrument} {day_obs}: {metric}")
            return Response(svg, media_type=SVG_MEDIA_TYPE, headers={"Cache-Control": "no-cache"})

        return await run_in_threadpool(build)

    async def focal_plane_plot(request: Request) -> Response:
        params = request.query_params
        instrument = params.get("instrument", "")
        image_name = params.get("image", "")
        metric = params.get("metric", "")

        def build() -> Response:
            from ..data.camera import get_instrument
            from .plots import SVG_MEDIA_TYPE, focal_plane_svg

            try:
                get_instrument(instrument)
            except ValueError as e:
                raise not_found(str(e)) from None
            values = source.queries().detector_values(instrument, image_name, metric)
            svg = focal_plane_svg(instrument, values, metric, f"{image_name}: {metric}")
            return Response(svg, media_type=SVG_MEDIA_TYPE, headers={"Cache-Control": "no-cache"})

        return await run_in_threadpool(build)

    async def files(request: Request) -> Response:
        relative = request.path_params["path"]
        found = await run_in_threadpool(resolve_product, root, relative)
        if found is None:
            raise not_found("no such product")
        # A product is never a page of this site: an HTML product is sent as text.
        response = FileResponse(found)
        if "html" in response.headers.get("content-type", ""):
            response.headers["content-type"] = "text/plain; charset=utf-8"
        return response

    async def api_now(request: Request) -> Response:
        return JSONResponse(feed.snapshot())

    async def events(request: Request) -> Response:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":  # no stream, and no subscription left behind
            return Response(media_type="text/event-stream", headers=headers)
        if feed.n_subscribers >= feed.max_subscribers:
            return PlainTextResponse(f"{feed.n_subscribers} browsers already follow the live feed", status_code=503)

        # ?only=row: the night table's stream, without every jobResult and heartbeat.
        only = request.query_params.get("only")
        wanted = {kind for kind in only.split(",") if kind in ("event", "row")} if only else None

        async def stream() -> AsyncIterator[str]:
            # Subscribed here, not in the handler: a stream that never starts (the browser went at
            # once) then leaves no subscription behind; once started, its finally always runs.
            try:
                subscription = feed.subscribe(wanted)
            except RuntimeError as e:
                yield sse_message("error", {"message": str(e)})
                return
            try:
                async for message in subscription.messages(KEEPALIVE):
                    yield message
            finally:
                feed.unsubscribe(subscription)

        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def database_unavailable(request: Request, exc: Exception) -> Response:
        """Any route, before the CSC made the database or while it cannot be read: a 503 that says why."""
        if request.url.path.startswith(("/files/", "/plot/", "/events", "/api/")) or request.url.path.endswith(
            (".csv", ".json")
        ):
            return PlainTextResponse(f"503 {exc}", status_code=503)
        context = {"title": "No results database", "message": str(exc), **nav(None)}
        return await run_in_threadpool(render, "error.html", context, 503)

    async def error_page(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        title = "Not found" if exc.status_code == 404 else "Error"
        if request.url.path.startswith(("/files/", "/plot/", "/static/", "/events", "/api/")):
            return PlainTextResponse(f"{exc.status_code} {exc.detail}", status_code=exc.status_code)
        return await run_in_threadpool(
            render,
            "error.html",
            {"title": title, "message": str(exc.detail), **nav(None)},
            exc.status_code,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await feed.start()
        except Exception as e:
            # The database pages still work; the Now page says why the live part does not.
            feed.error = f"live feed not started: {e}"
            _log.error("%s", feed.error)
        try:
            yield
        finally:
            await feed.close()
            await run_in_threadpool(source.close)

    routes = [
        Route("/", now),
        Route("/api/now", api_now),
        Route("/events", events),
        Route("/night/{instrument}", latest("night")),
        Route("/trends/{instrument}", latest("trends")),
        Route("/night/{instrument}/{day_obs:int}.csv", night_csv),
        Route("/night/{instrument}/{day_obs:int}.json", night_json),
        Route("/night/{instrument}/{day_obs:int}", night),
        Route("/trends/{instrument}/{day_obs:int}", trends),
        Route("/image/{instrument}/{image_name:path}", image),
        Route("/plot/trend.svg", trend_plot),
        Route("/plot/focal_plane.svg", focal_plane_plot),
        Route("/files/{path:path}", files),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(ReadOnlyMiddleware)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: error_page, 400: error_page, DatabaseUnavailable: database_unavailable},
        lifespan=lifespan,
    )
    app.state.feed = feed
    app.state.source = source
    return app
