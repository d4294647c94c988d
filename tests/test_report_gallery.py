"""The report's video gallery: files, relative links, values, the sort script; and (opt-in) the page in a
real headless Chromium: no console errors, videos and contact sheets load, clicking a header sorts."""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_fixtures import make_doc, write_run

from kdbench.video import write_video
from reports.cli import write_report
from reports.gallery import SHEET_FRAMES, SHEET_HEIGHT, build_gallery, slug
from reports.runs import load_run
from reports.table import build_table

CLIPS = ["A_clip_000", "B_clip_000", "C_clip_000"]
KD_LSE_C = [7.0, 8.0, 6.0]  # higher is better: worst first C, A, B; best first B, A, C
BROWSER = os.environ.get("KDBENCH_BROWSER_TESTS") == "1"


def _frames(n: int, shade: int, size: int = 48) -> np.ndarray:
    f = np.full((n, size, size, 3), shade, np.uint8)
    f[:, :, : size // 2, 0] = np.linspace(0, 255, n, dtype=np.uint8)[:, None, None]  # changes over time
    return f


def _runs(root: Path, gt_from_dataset: Path | None = None, **doc) -> list[Path]:
    """real (GT videos for clips A, B), kdtalker (A, B, C), static (A, B, C), each with 10-frame videos."""
    specs = {
        "real": ({"cpbd": {"cpbd": [0.40, 0.41]}}, CLIPS[:2], 200),
        "kdtalker": ({"lse": {"lse_c": KD_LSE_C, "lse_d": [7.5, 7.0, 8.0]}, "cpbd": {"cpbd": [0.3, 0.2, 0.25]},
                      "diversity": {"pose_std_kdtalker_compat": [0.7, 0.8, 0.75], "pose_std_deg": [5.0, 6.0, 7.0]}},
                     CLIPS, 120),
        "static": ({"lse": {"lse_c": [1.0, 2.0, 1.5], "lse_d": [11.0, 12.0, 11.5]},
                    "cpbd": {"cpbd": [0.2, 0.2, 0.2]}}, CLIPS, 60),
    }
    dirs = []
    for method, (metrics, clips, shade) in specs.items():
        if gt_from_dataset is not None and method == "real":
            continue
        d = write_run(root / method, make_doc(method, metrics, clips=clips, **doc))
        for i, cid in enumerate(clips):
            write_video(d / "videos" / f"{cid}.mp4", _frames(10, shade + 10 * i), 25)
        dirs.append(d)
    return dirs


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        for k in ("src", "href", "poster"):
            if a.get(k):
                self.links.append(a[k])


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gallery")
    out = root / "report"
    write_report(_runs(root / "runs"), out, formats=["html"], figures=False, ci=500)
    return out


def test_gallery_copies_videos_and_writes_contact_sheets(report):
    for row, clips in (("Real Video", CLIPS[:2]), ("KDTalker", CLIPS), ("static", CLIPS)):
        for cid in clips:
            video, sheet = report / "gallery" / slug(row) / f"{cid}.mp4", report / "gallery" / slug(row) / f"{cid}.jpg"
            assert video.stat().st_size > 0
            with Image.open(sheet) as im:
                assert im.size == (SHEET_FRAMES * SHEET_HEIGHT, SHEET_HEIGHT)  # 4 square frames side by side
    assert not (report / "gallery" / slug("Real Video") / "C_clip_000.mp4").exists()
    # the first and last sheet frames differ: frames are sampled across the clip, not repeated
    with Image.open(report / "gallery" / "kdtalker" / "A_clip_000.jpg") as im:
        a = np.asarray(im.convert("RGB"), dtype=float)
    assert abs(a[:, :20, 0].mean() - a[:, -SHEET_HEIGHT:-SHEET_HEIGHT + 20, 0].mean()) > 100


def test_every_link_is_relative_and_resolves_to_a_file(report):
    page = (report / "report.html").read_text()
    p = _Links()
    p.feed(page)
    rel = [s for s in p.links if not s.startswith("data:")]
    assert len(rel) == 2 * (2 + 3 + 3)  # a video and a poster per tile
    for s in rel:
        assert not s.startswith(("/", "http:", "https:", "file:")) and ".." not in s
        assert (report / s).is_file(), s
    videos = [a for t, a in p.tags if t == "video"]
    assert all("muted" in a and "loop" in a for a in videos) and len(videos) == 8


def test_cards_hold_the_per_clip_values_and_the_sort_script(report):
    page = (report / "report.html").read_text()
    p = _Links()
    p.feed(page)
    cards = [a for t, a in p.tags if t == "div" and "data-clip" in a]
    assert [c["data-clip"] for c in cards] == CLIPS
    for cid, card in zip(CLIPS, cards, strict=True):
        values = json.loads(card["data-values"])
        assert values["KDTalker"]["LSE-C"] == KD_LSE_C[CLIPS.index(cid)]
        assert values["static"]["CPBD"] == 0.2
    assert "Real Video" not in json.loads(cards[2]["data-values"])  # no GT clip C
    heads = [(a["data-col"], a["data-hib"]) for t, a in p.tags if t == "th" and "data-col" in a]
    # Table 1 columns, then the per-clip outputs outside Table 1
    assert heads == [("LSE-C", "1"), ("LSE-D", "0"), ("Diversity", "1"), ("CPBD", "1"),
                     ("diversity.pose_std_deg", "1")]
    assert json.loads(cards[1]["data-values"])["KDTalker"]["diversity.pose_std_deg"] == 6.0
    assert "function sortBy(" in page and "addEventListener('click'" in page
    assert "LSE-C: 7.000" in page  # the values are printed under each video
    assert [o for t, o in p.tags if t == "option"] == [  # sorted by the first method's values at first
        {"value": "Real Video"}, {"value": "KDTalker", "selected": None}, {"value": "static"}]


def test_gallery_gt_comes_from_the_dataset_without_a_gt_run(tmp_path, tiny_dataset):
    from kdbench.dataset import load_dataset

    ds = load_dataset(tiny_dataset)
    dirs = _runs(tmp_path / "runs", gt_from_dataset=tiny_dataset, manifest_id=ds.manifest_id, dataset="tiny")
    for d in dirs:
        (d / "config.json").write_text(json.dumps({"method": d.name, "dataset": {
            "name": "tiny", "root": str(tiny_dataset), "manifest_id": ds.manifest_id}}))
    g = build_gallery(build_table([load_run(d) for d in dirs]), tmp_path / "out")
    assert g.rows == ["GT", "KDTalker", "static"]
    tiles = {c.clip_id: c.tiles[0] for c in g.clips}
    assert tiles["A_clip_000"].video == "gallery/gt/A_clip_000.mp4" and tiles["C_clip_000"].video is None
    assert (tmp_path / "out" / "gallery" / "gt" / "A_clip_000.mp4").read_bytes() == (
        tiny_dataset / "gt" / "A_clip_000.mp4").read_bytes()


def test_no_videos_no_gallery(tmp_path):
    d = write_run(tmp_path / "kd", make_doc("kdtalker", {"cpbd": {"cpbd": [0.1, 0.2, 0.3]}}))
    assert build_gallery(build_table([load_run(d)]), tmp_path / "out") is None


# ---------------------------------------------------------------------------------------------
# In a real browser (opt-in)
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not BROWSER, reason="headless-Chromium test: set KDBENCH_BROWSER_TESTS=1 (needs `apt-get "
                                        "install chromium` and `pip install websocket-client`)")
def test_gallery_in_headless_chromium(report, tmp_path):
    from scripts.headless_chromium import Page

    with Page(1200, 900) as page:
        page.goto(report / "report.html")
        page.eval("new Promise(function(r){var v=[].slice.call(document.querySelectorAll('video'));"
                  "var t=setInterval(function(){if(v.every(function(x){return x.readyState>=1||x.error;}))"
                  "{clearInterval(t);r();}},50);setTimeout(r,8000);})", await_promise=True)
        assert page.errors() == []
        state = page.eval("[].slice.call(document.querySelectorAll('video')).map(function(v){"
                          "return [v.readyState, v.error?v.error.code:0, v.videoWidth];})")
        assert len(state) == 8 and all(rs >= 1 and err == 0 and w == 48 for rs, err, w in state), state
        imgs = page.eval("[].slice.call(document.querySelectorAll('#gallery img, video')).map(function(e){"
                         "if(e.tagName==='VIDEO'){return e.poster?1:0;} return e.complete&&e.naturalWidth>0?1:0;})")
        assert imgs and all(imgs)
        sheets = page.eval("Promise.all([].slice.call(document.querySelectorAll('video')).map(function(v){"
                           "return new Promise(function(r){var i=new Image();i.onload=function(){r(i.naturalWidth);};"
                           "i.onerror=function(){r(0);};i.src=v.poster;});}))", await_promise=True)
        assert sheets == [SHEET_FRAMES * SHEET_HEIGHT] * 8
        order = ("[].slice.call(document.querySelectorAll('#gallery-clips .clip'))"
                 ".map(function(c){return c.dataset.clip;})")
        assert page.eval("document.getElementById('gallery-row').value") == "KDTalker"
        # on load: sorted by the first metric, worst clips first
        assert page.eval(order) == ["C_clip_000", "A_clip_000", "B_clip_000"]  # worst LSE-C first
        assert page.eval("document.getElementById('gallery').dataset.sorted") == "LSE-C|worst|KDTalker"
        page.click('table.gallery-sort th[data-col="LSE-C"]')  # clicking the active header: best first
        assert page.eval(order) == ["B_clip_000", "A_clip_000", "C_clip_000"]
        assert page.eval("document.querySelector('th.active').textContent") == "LSE-C (best first)"
        page.click('table.gallery-sort th[data-col="LSE-C"]')
        assert page.eval(order) == ["C_clip_000", "A_clip_000", "B_clip_000"]
        page.click('table.gallery-sort th[data-col="LSE-D"]')  # lower is better: worst = highest first
        assert page.eval(order) == ["C_clip_000", "A_clip_000", "B_clip_000"]
        page.eval("var s=document.getElementById('gallery-row');s.value='static';"
                  "s.dispatchEvent(new Event('change'))")
        page.click('table.gallery-sort th[data-col="LSE-C"]')  # static's LSE-C 1.0, 2.0, 1.5: worst first
        assert page.eval(order) == ["A_clip_000", "C_clip_000", "B_clip_000"]
        # hovering plays the (muted) thumbnail
        page.send("Input.dispatchMouseEvent", type="mouseMoved", x=0, y=0)
        box = page.eval("(function(){var t=document.querySelector('.tile[data-row=\"KDTalker\"]');"
                        "t.scrollIntoView({block:'center'});var r=t.getBoundingClientRect();"
                        "return [r.left+r.width/2,r.top+20];})()")
        page.send("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])
        playing = page.eval("new Promise(function(r){setTimeout(function(){var v=document.querySelector("
                            "'.tile[data-row=\"KDTalker\"] video');r([v.paused, v.muted]);},500);})",
                            await_promise=True)
        assert playing == [False, True]
        assert page.errors() == []
        shot = page.screenshot(tmp_path / "gallery.png")
        with Image.open(shot) as im:
            assert im.size == (1200, 900)


def test_large_galleries_preload_no_video(report, monkeypatch):
    import reports.gallery as gallery

    runs = [load_run(report.parent / "runs" / n) for n in ("real", "kdtalker", "static")]
    g = build_gallery(build_table(runs), report.parent / "again")
    assert gallery.gallery_html(g).count('preload="metadata"') == 8
    monkeypatch.setattr(gallery, "PRELOAD_MAX", 7)
    page = gallery.gallery_html(g)
    assert page.count('preload="none"') == 8 and page.count("poster=") == 8
