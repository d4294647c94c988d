"""The report's video gallery: per clip, the GT video and each method's video side by side.

:func:`build_gallery` copies (hard-links when possible) each video into ``<out>/gallery/<row slug>/
<clip>.mp4`` and writes a contact sheet of frames next to it (``<clip>.jpg``: :data:`SHEET_FRAMES`
frames side by side), so the report folder is self-contained (relative links, no server). The HTML
(:func:`gallery_html`) shows muted thumbnails that play on hover, with the contact sheet as poster and
as the fallback where a video cannot be played; the per-clip metric values sit under each video, and
the clips are sortable by any metric of any method (worst first by default, click again for best
first). The sort script is inline and uses no library.

Where the videos are found: ``<run folder>/videos/<clip_id>.mp4`` (written by ``kdbench run`` /
``kdbench eval --videos``); the GT video from a GT run (``real``) or, failing that, from the run's
dataset (``config.json["dataset"]``).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdbench.dataset import clip_id_problem

from .cells import clip_values
from .outdir import inside
from .runs import RunResult, finite
from .table import ReportTable

GALLERY_DIR = "gallery"
SHEET_FRAMES = 4
SHEET_HEIGHT = 96
GT_LABEL = "GT"


@dataclass
class Tile:
    """One video of the gallery: ``video``/``sheet`` relative to the report folder (None if absent)."""

    row: str
    video: str | None = None
    sheet: str | None = None
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class GalleryClip:
    clip_id: str
    tiles: list[Tile]


@dataclass
class Gallery:
    clips: list[GalleryClip]
    rows: list[str]
    columns: list[str]
    """Metric columns with per-clip values (sort keys), in table order."""
    higher_is_better: dict[str, bool | None]
    notes: list[str] = field(default_factory=list)
    sort_row: str | None = None
    """The row whose values sort the clips at first (the first method that is not the GT)."""
    extra: set[str] = field(default_factory=set)
    """Columns from outside Table 1 (listed under a collapsed "more" under each video)."""


def slug(text: str) -> str:
    """A file-name-safe form of a row label: ``"Real Video (steps5)"`` -> ``"real-video-steps5"``."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "row"


def _run_folder(run: RunResult) -> Path | None:
    if run.path is None:
        return None
    return run.path if run.path.is_dir() else run.path.parent


def run_video(run: RunResult, clip_id: str) -> Path | None:
    folder = _run_folder(run)
    if folder is None:
        return None
    p = folder / "videos" / f"{clip_id}.mp4"
    if clip_id_problem(clip_id) or not p.is_file() or not p.resolve().is_relative_to(folder.resolve()):
        return None  # a link out of the run folder is not the run's video
    return p


def gt_videos(runs: Sequence[RunResult]) -> dict[str, Path]:
    """``{clip_id: GT video}`` from the runs' dataset (first run whose dataset loads)."""
    for run in runs:
        d = run.config.get("dataset") or (run.run.get("config") or {}).get("dataset")
        if not isinstance(d, dict):
            continue
        try:
            from kdbench.dataset import BUILTIN_DATASETS, load_dataset

            ds = load_dataset(d["name"] if d.get("name") in BUILTIN_DATASETS else d["root"])
        except Exception:  # noqa: BLE001 - dataset moved/absent: the gallery shows no GT then
            continue
        if d.get("manifest_id") and ds.manifest_id != d["manifest_id"]:
            continue
        return {c.clip_id: Path(c.gt_video) for c in ds.clips if c.gt_video is not None
                and clip_id_problem(c.clip_id) is None}
    return {}


def _place(src: Path, dst: Path, out: Path) -> None:
    """``src`` at ``dst`` (a hard link, else a copy), replacing an older file there; ``dst`` must lie in ``out``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    inside(out, dst)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def contact_sheet(video: Path, out: Path, frames: int = SHEET_FRAMES, height: int = SHEET_HEIGHT,
                  root: Path | None = None) -> Path:
    """A JPEG of ``frames`` evenly spaced frames of ``video`` side by side, each ``height`` px tall."""
    from PIL import Image

    from kdbench.video import iter_frames, probe_video

    if out.is_file() and out.stat().st_mtime >= video.stat().st_mtime:
        return out  # made by an earlier report from the same video
    n = max(1, probe_video(video).n_frames or 1)
    want = set(np.linspace(0, n - 1, frames).round().astype(int).tolist())
    picked = []
    for i, f in enumerate(iter_frames(video, max_frames=max(want) + 1)):
        if i in want:
            im = Image.fromarray(f)
            picked.append(im.resize((max(1, round(im.width * height / im.height)), height), Image.BILINEAR))
    if not picked:
        raise ValueError(f"{video} has no frames")
    sheet = Image.new("RGB", (sum(p.width for p in picked), height), "white")
    x = 0
    for p in picked:
        sheet.paste(p, (x, 0))
        x += p.width
    out.parent.mkdir(parents=True, exist_ok=True)
    if root is not None:
        inside(root, out)
    sheet.save(out, quality=85)
    return out


def build_gallery(table: ReportTable, out: str | Path, media: bool = True,
                  other: ReportTable | None = None) -> Gallery | None:
    """Collect the gallery of ``table``'s runs into ``out/gallery``; None when no run has videos.

    ``other``: the table of outputs outside Table 1 (same rows), whose per-clip outputs become further
    sort keys. ``media=False`` links nothing and makes no contact sheets (the HTML then lists the values
    only)."""
    out = Path(out)
    runs = [table.runs[r] for r in table.rows]
    videos = {r: {} for r in table.rows}
    clip_ids: list[str] = []
    for label, run in zip(table.rows, runs, strict=True):
        ids = list(dict.fromkeys([*run_clip_ids(run)]))
        for cid in ids:
            v = run_video(run, cid)
            if v is not None:
                videos[label][cid] = v
            if cid not in clip_ids:
                clip_ids.append(cid)
    if not any(videos.values()):
        return None
    gt_rows = [r for r in table.rows if r in table.gt_rows]
    gt = {} if gt_rows else gt_videos(runs)
    rows = ([] if gt_rows or not gt else [GT_LABEL]) + list(table.rows)
    notes: list[str] = []
    tables = [table] + ([other] if other is not None and other.rows == table.rows else [])
    cell_of = {}
    for t in tables:
        for c in t.columns:
            if c not in cell_of and any(t.cells[(r, c)].status == "ok" and t.cells[(r, c)].output and clip_values(
                    t.runs[r], t.cells[(r, c)].metric, t.cells[(r, c)].output) for r in t.rows):
                cell_of[c] = t
    columns = list(cell_of)
    clips = []
    for cid in sorted(clip_ids):
        tiles = []
        for row in rows:
            src = gt.get(cid) if row == GT_LABEL else videos[row].get(cid)
            tile = Tile(row=row)
            if row != GT_LABEL:
                for col in columns:
                    c = cell_of[col].cells[(row, col)]
                    if c.status == "ok" and c.metric:
                        v = finite(clip_values(table.runs[row], c.metric, c.output).get(cid))
                        if v is not None:
                            tile.values[col] = v
            if src is not None and media:
                rel = Path(GALLERY_DIR) / slug(row) / f"{cid}.mp4"
                _place(Path(src), out / rel, out)
                tile.video = rel.as_posix()
                try:
                    tile.sheet = contact_sheet(Path(src), out / rel.with_suffix(".jpg"),
                                               root=out).relative_to(out).as_posix()
                except Exception as e:  # noqa: BLE001 - a broken video: the tile says so
                    notes.append(f"gallery: no contact sheet for {row} / {cid}: {type(e).__name__}: {e}")
            tiles.append(tile)
        clips.append(GalleryClip(cid, tiles))
    hib = {c: cell_of[c].higher_is_better(c) for c in columns}
    sort_row = next((r for r in table.rows if r not in table.gt_rows), table.rows[0])
    return Gallery(clips=clips, rows=rows, columns=columns, higher_is_better=hib, notes=notes, sort_row=sort_row,
                   extra={c for c in columns if cell_of[c] is not table})


def run_clip_ids(run: RunResult) -> list[str]:
    """Clip ids of a run: its per-clip records and failures, in order, then its ``videos/`` files. Only ids that
    pass the dataset's clip-id check (:func:`kdbench.dataset.clip_id_problem`: a file name, never a path) are
    returned; :func:`reports.runs.load_run` already refuses a ``metrics.json`` holding another."""
    ids: list[str] = []
    for entry in run.metrics.values():
        for key in ("per_clip", "failures"):
            ids += [c for c in ((entry or {}).get(key) or {}) if isinstance(c, str)]
    folder = _run_folder(run)
    if folder is not None and (folder / "videos").is_dir():
        ids += sorted(p.name[:-len(".mp4")] for p in (folder / "videos").glob("*.mp4"))
    return [c for c in dict.fromkeys(ids) if clip_id_problem(c) is None]


GALLERY_CSS = """
.gallery-controls{margin:.5em 0;font-size:.9em}
table.gallery-sort{border-collapse:collapse;font-size:.85em;margin:.4em 0}
table.gallery-sort tr{display:flex;flex-wrap:wrap;gap:.3em}
table.gallery-sort th{cursor:pointer;padding:.25em .6em;border:1px solid #ccc;background:#f7f7f7;user-select:none;
  white-space:nowrap;font-weight:500}
table.gallery-sort th.active{background:#dde8f6}
.clip{border-top:1px solid #ddd;padding:.5em 0}
.clip h3{font-size:.95em;margin:.2em 0}
.tiles{display:flex;flex-wrap:wrap;gap:.6em}
.tile{width:200px;font-size:.78em}
.tile video,.tile img{width:200px;height:auto;background:#eee;display:block}
.tile .row{font-weight:600}
.tile ul{list-style:none;margin:.2em 0;padding:0;color:#333;font-size:.92em;overflow-wrap:anywhere}
.tile details summary{cursor:pointer;color:#555}
.tile .missing{color:#999;font-style:italic;padding:2em 0;text-align:center;background:#f6f6f6}
"""

GALLERY_JS = """
(function(){
  var root=document.getElementById('gallery');
  if(!root){return;}
  var list=document.getElementById('gallery-clips');
  var sel=document.getElementById('gallery-row');
  var state={col:null,best:false};
  function key(card,col){
    var v=JSON.parse(card.getAttribute('data-values'));
    var x=(v[sel.value]||{})[col];
    return (x===undefined||x===null)?null:x;
  }
  function sortBy(col,best){
    var th=root.querySelector('th[data-col="'+col+'"]');
    var hib=th.getAttribute('data-hib');
    var higher=(hib==='1');
    var cards=Array.prototype.slice.call(list.children);
    cards.sort(function(a,b){
      var x=key(a,col),y=key(b,col);
      if(x===null&&y===null){return 0;} if(x===null){return 1;} if(y===null){return -1;}
      var d=x-y;
      var asc=(hib==='')?!best:(higher!==best);
      return asc?d:-d;
    });
    cards.forEach(function(c){list.appendChild(c);});
    root.querySelectorAll('table.gallery-sort th').forEach(function(h){h.classList.remove('active');
      h.textContent=h.getAttribute('data-col');});
    th.classList.add('active');
    th.textContent=col+(hib===''?(best?' (descending)':' (ascending)'):(best?' (best first)':' (worst first)'));
    state.col=col; state.best=best;
    root.setAttribute('data-sorted',col+'|'+(best?'best':'worst')+'|'+sel.value);
  }
  root.querySelectorAll('table.gallery-sort th').forEach(function(th){
    th.addEventListener('click',function(){
      var col=th.getAttribute('data-col');
      sortBy(col,state.col===col?!state.best:false);
    });
  });
  sel.addEventListener('change',function(){if(state.col){sortBy(state.col,state.best);}});
  root.querySelectorAll('video').forEach(function(v){
    var tile=v.parentNode;
    tile.addEventListener('mouseenter',function(){var p=v.play();if(p&&p.catch){p.catch(function(){});}});
    tile.addEventListener('mouseleave',function(){v.pause();});
    v.addEventListener('error',function(){
      if(!v.poster){return;}
      var img=document.createElement('img');img.src=v.poster;img.alt=v.getAttribute('aria-label')||'';
      img.className='sheet-fallback';v.parentNode.replaceChild(img,v);
    });
  });
  var first=root.querySelector('table.gallery-sort th');
  if(first){sortBy(first.getAttribute('data-col'),false);}
})();
"""


def _fmt(v: float, precision: int) -> str:
    return f"{v:.{precision}f}"


PRELOAD_MAX = 60
"""Up to this many videos, the page preloads their metadata; beyond, nothing until hovered (posters show)."""


def gallery_html(g: Gallery, precision: int = 3) -> str:
    """The gallery section (controls, clip cards, inline sort script) as an HTML fragment."""
    esc = html.escape
    n_videos = sum(1 for c in g.clips for t in c.tiles if t.video)
    preload = "metadata" if n_videos <= PRELOAD_MAX else "none"
    hib = {c: "" if g.higher_is_better.get(c) is None else str(int(bool(g.higher_is_better[c]))) for c in g.columns}
    heads = "".join(f'<th data-col="{esc(c)}" data-hib="{hib[c]}" title="click: worst clips first; again: best '
                    f'first">{esc(c)}</th>' for c in g.columns)
    value_rows = [r for r in g.rows if r != GT_LABEL]
    options = "".join(f'<option value="{esc(r)}"{" selected" if r == g.sort_row else ""}>{esc(r)}</option>'
                      for r in value_rows)
    cards = []
    for clip in g.clips:
        values = {t.row: t.values for t in clip.tiles if t.values}
        tiles = []
        for t in clip.tiles:
            label = f"{t.row} — {clip.clip_id}"
            if t.video:
                poster = f' poster="{esc(t.sheet)}"' if t.sheet else ""
                media = (f'<video src="{esc(t.video)}"{poster} muted loop playsinline preload="{preload}" '
                         f'aria-label="{esc(label)}"></video>')
            elif t.sheet:
                media = f'<img src="{esc(t.sheet)}" alt="{esc(label)}">'
            else:
                media = '<div class="missing">no video</div>'
            main = "".join(f"<li>{esc(c)}: {_fmt(v, precision)}</li>" for c, v in t.values.items()
                           if c not in g.extra)
            more = "".join(f"<li>{esc(c)}: {_fmt(v, precision)}</li>" for c, v in t.values.items() if c in g.extra)
            more = f"<details><summary>more</summary><ul>{more}</ul></details>" if more else ""
            tiles.append(f'<div class="tile" data-row="{esc(t.row)}">{media}<div class="row">{esc(t.row)}</div>'
                         f"<ul>{main}</ul>{more}</div>")
        cards.append(f'<div class="clip" data-clip="{esc(clip.clip_id)}" data-values="{esc(json.dumps(values))}">'
                     f'<h3>{esc(clip.clip_id)}</h3><div class="tiles">{"".join(tiles)}</div></div>')
    controls = (f'<div class="gallery-controls">Sort clips by the values of <select id="gallery-row">{options}'
                f"</select> — click a metric (first click: worst clips first; again: best first):"
                f'<table class="gallery-sort"><tr>{heads}</tr></table></div>' if g.columns else "")
    return (f'<div id="gallery">{controls}<div id="gallery-clips">{"".join(cards)}</div></div>'
            f"<script>{GALLERY_JS}</script>")


def gallery_caption(g: Gallery) -> str:
    return ("Each clip: the GT video and each method's video (muted; hover to play; the still is a contact sheet "
            f"of {SHEET_FRAMES} frames, shown where the video cannot play), with the clip's metric values under "
            "each video. Videos are copies under gallery/ (relative links: the folder opens without a server).")

