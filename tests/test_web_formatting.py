"""How the page writes values (web.formatting): numbers, times, sizes, links, the night table's cells and rows."""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any

from lsst.ts.rapidanalysis.sal.tai import tai_from_utc
from lsst.ts.rapidanalysis.web import formatting as fmt


def test_numbers() -> None:
    cases = {
        None: "",
        math.nan: "",
        3: "3",
        30.0: "30",
        0.8604: "0.860",
        0.0459: "0.0459",
        30.912: "30.91",
        2249.3: "2249",
        123.45: "123.5",
        1.5e7: "1.5e+07",
        0.000123: "0.000123",
    }
    for value, text in cases.items():
        assert fmt.num(value) == text, (value, fmt.num(value))
    assert fmt.seconds(12.34) == "12.3 s" and fmt.seconds(None) == ""
    assert [fmt.size(n) for n in (None, 12, 49327, 439253, 12_345_678)] == ["", "12 B", "49.3 kB", "439 kB", "12.3 MB"]


def test_times_and_links() -> None:
    utc = datetime.datetime(2025, 11, 15, 23, 59, 58, tzinfo=datetime.UTC)
    tai = tai_from_utc(utc.timestamp())
    assert tai - utc.timestamp() == 37.0
    assert fmt.utc(tai) == "23:59:58" and fmt.utc(None) == "" and fmt.utc(math.nan) == ""
    assert fmt.http_url("https://x/status") == "https://x/status"
    assert fmt.http_url("javascript:alert(1)") == "" and fmt.http_url(None) == ""
    assert fmt.image_href("LSSTCam", "MC_O_1/../x <y>") == "/image/LSSTCam/MC_O_1%2F..%2Fx%20%3Cy%3E"
    assert fmt.csv_cell("=1+1") == "'=1+1" and fmt.csv_cell("-x") == "'-x" and fmt.csv_cell(-1.0) == -1.0
    assert fmt.csv_cell(None) == ""


@dataclasses.dataclass(frozen=True)
class Row:
    """The fields of a NightRow the formatter reads."""

    instrument: str = "LATISS"
    image_name: str = 'AT_O_20251115_000001"><script>x</script>'
    day_obs: int = 20251115
    seq_num: int = 1
    obs_time: float | None = None
    image_type: str = "SCIENCE"
    filter: str = "<b>"
    exposure_time: float = 30.0
    state: str = "partial"
    reason: str = "2 of 189 <failed>"
    n_expected: int = 189
    n_done: int = 187
    n_failed: int = 2
    n_dropped: int = 0
    metrics: dict[str, Any] = dataclasses.field(default_factory=lambda: {"FWHM": 0.81, "Sky": None})
    latency_first_detector: float | None = 5.0
    latency_visit_metrics: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def test_night_cells_and_row() -> None:
    """Every column has a cell; the row's HTML escapes everything in it, attributes included."""
    labels = ["FWHM", "Sky"]
    columns = fmt.night_columns(labels)
    row = Row()
    cells = fmt.night_cells(row, labels)
    assert [c["key"] for c in columns] == list(cells)
    assert cells["metric:FWHM"]["text"] == "0.810" and cells["metric:Sky"] == {
        "text": "",
        "sort": "",
        "title": "",
        "cls": "",
    }
    assert cells["state"]["text"] == "partial: 2 of 189 <failed>" and cells["state"]["cls"] == "state-partial"
    assert cells["detectors"]["text"] == "187/189" and cells["latency_visit_metrics"]["text"] == ""
    html = str(fmt.night_row_html(row, cells, columns))
    assert "<script>" not in html and "<b>" not in html and "<failed>" not in html
    assert 'data-image="AT_O_20251115_000001&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in html
    assert html.count("<td") == len(columns) and html.count(" hidden") == 1  # the detectors column
    payload = fmt.night_row_payload(row, labels)
    assert payload["cells"] == cells and payload["href"].startswith("/image/LATISS/AT_O_20251115_000001%22")
    table = str(fmt.detector_rows_html({1: {"a": 0.5}, 0: {"a": None}}, ["a"], {0: "R22_S00", 1: "<x>"}))
    assert table.index("R22_S00") < table.index("&lt;x&gt;") and "0.5000" in table
