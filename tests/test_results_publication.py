"""results.publication: strings fitted to their fields, and samples that fail alone.

``write_sample`` is tried on the topics of a real RapidAnalysis Controller (real DDS), read back by
a Remote.
"""

from __future__ import annotations

import math

import pytest

from lsst.ts.rapidanalysis.results.publication import PublishError, fit_text, write_sample
from lsst.ts.rapidanalysis.sal import Controller, Remote

STD_TIMEOUT = 30.0


def test_fit_text() -> None:
    assert fit_text("short", 256) == ("short", False)
    assert fit_text("x" * 300, 0) == ("x" * 300, False)  # unbounded
    assert fit_text("x" * 256, 256) == ("x" * 256, False)
    text, truncated = fit_text("x" * 300, 256)
    assert truncated and text.endswith("…(truncated, 300 bytes)") and len(text.encode()) == 256
    assert text.startswith("x" * 200)
    # Never a split character: "é" is 2 bytes.
    text, truncated = fit_text("é" * 200, 256)
    assert truncated and text.endswith("…(truncated, 400 bytes)") and len(text.encode()) <= 256
    text.encode("utf-8")
    # A field too small for the note gets as much of the note as fits.
    text, truncated = fit_text("x" * 30, 10)
    assert truncated and len(text.encode()) <= 10
    # A lone surrogate (from JSON "\ud800") is escaped rather than failing.
    assert fit_text("a\ud800b", 0) == ("a\\ud800b", False)


async def test_write_sample() -> None:
    async with Controller("RapidAnalysis", 1) as controller, Remote(controller.domain, "RapidAnalysis", 1) as remote:
        lfo = controller.evt_largeFileObjectAvailable
        url = "file:///" + "d/" * 200 + "plot.png"
        notes = write_sample(lfo, dict(url=url, id="ra-1", byteSize=10, mimeType="image/png"))
        assert len(notes) == 1 and "largeFileObjectAvailable.url was shortened to fit its 256-byte field" in notes[0]
        data = await remote.evt_largeFileObjectAvailable.next(flush=False, timeout=STD_TIMEOUT)
        assert data.url.endswith(f"…(truncated, {len(url)} bytes)") and data.id == "ra-1", data

        tel = controller.tel_spectrumMetrics
        assert write_sample(tel, dict(imageName="a\ud800", continuumRate=None, nGoodRows=3), force_output=None) == []
        data = await remote.tel_spectrumMetrics.next(flush=False, timeout=STD_TIMEOUT)
        assert data.imageName == "a\\ud800" and math.isnan(data.continuumRate) and data.nGoodRows == 3

        # Rejected samples leave the topic as it was: the next write sends only good values.
        bad = [
            (dict(private_rcvStamp="x"), "no field(s) 'private_rcvStamp'"),
            (dict(salIndex=5), "no field(s) 'salIndex'"),
            (dict(nGoodRows="many"), "nGoodRows='many' must be an integer"),
            (dict(nGoodRows=2**40), "out of range"),
            (["imageName"], "fields must be a mapping"),
        ]
        for fields, expected in bad:
            with pytest.raises(PublishError, match="telemetry spectrumMetrics rejected") as e:
                write_sample(tel, fields, force_output=None, what="telemetry spectrumMetrics")  # type: ignore[arg-type]
            assert expected in str(e.value), str(e.value)
        assert tel.data.nGoodRows == 3 and tel.data.private_rcvStamp == 0
        write_sample(tel, dict(imageName="b", nGoodRows=4), force_output=None)
        data = await remote.tel_spectrumMetrics.next(flush=False, timeout=STD_TIMEOUT)
        assert (data.imageName, data.nGoodRows) == ("b", 4)
        assert remote.tel_spectrumMetrics.nqueued == 0
