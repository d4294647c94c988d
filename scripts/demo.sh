#!/usr/bin/env bash
# `make demo`: the main job on the embedded hdtf-mini sample (kdbench/demo.py; `python -m kdbench.demo --help`).
# Online it first fetches the public metric weights (checksum-verified) so every metric of the paper's table is
# scored, and on a CUDA GPU it also runs KDTalker; offline it scores what needs no download and says how to get
# the rest. The metric options that keep it short are printed with the table and saved in report/demo_options.md.
# DEMO_ARGS passes options through, e.g. DEMO_ARGS="--offline" or DEMO_ARGS="--set lse.protocol=full".
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-demo_out}
# shellcheck disable=SC2086 - DEMO_ARGS is a list of options
exec "$PY" -m kdbench.demo --out "$OUT" ${DEMO_ARGS:-}
