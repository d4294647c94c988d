"""The local executor (the default): every unit of work in this process.

``generate``: the method is loaded once, then clips run one after another; with ``overlap_writes`` clip i is
normalised, encoded and written on a writer thread while clip i+1 generates (at most one clip waits; events keep
the clip order). ``score``: clip i+1 decodes on a background thread while clip i is scored; metrics that compute
in their own worker processes (CPBD) run beside the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..envinfo import collect_env
from ..generation import ClipGenerator, check_weights
from ..scoring import prefetch, score_one
from .base import Executor, GenerationOutcome, ScoreJob


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, overlap_writes: bool = False, keep_generated: bool = False):
        self.overlap_writes = bool(overlap_writes)
        self.keep_generated = bool(keep_generated)

    def generate(self, config: dict[str, Any], store, todo: list, record: Callable[[dict[str, Any]], None], *,
                 warmup: int = 1, progress: bool = True) -> GenerationOutcome:
        from tqdm import tqdm

        from ..weights import WeightsManager

        weights = WeightsManager()
        gen = ClipGenerator(config, store.root, weights, keep_generated=self.keep_generated)
        check_weights(config["method"], weights)
        try:
            load_seconds = gen.load(todo[0], warmup)
            store.append_event({"event": "load", "seconds": load_seconds, "wall_seconds": gen.load_wall_seconds,
                                "warmup": gen.warmup_record, "config_hash": config["config_hash"],
                                "time": time.time()})
            env = collect_env(config["device"])
            env["executor"] = {"name": "local", "workers": 1}
            env["warmup"] = gen.warmup_record  # untimed generations before the first timed clip (`--warmup 0`: none)
            env["weights"] = weights.record()
            method_env = gen.env_record()
            if method_env:
                env["method_env"] = method_env
            store.write_env(env)  # now, so that a run stopped half-way has its environment recorded

            writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdbench-writer") \
                if self.overlap_writes else None
            pending: list[Future] = []

            def submit(fn, *fn_args) -> None:
                """Run ``fn`` now, or on the writer thread after waiting for the previous write (bounded memory)."""
                if writer is None:
                    fn(*fn_args)
                    return
                while pending:
                    pending.pop().result()
                pending.append(writer.submit(fn, *fn_args))

            t_loop = time.perf_counter()
            bar = tqdm(todo, desc=f"run {config['method']}", unit="clip", disable=not progress)
            try:
                for spec in bar:
                    bar.set_postfix_str(spec.clip_id)
                    event = gen.new_event(spec)
                    produced = gen.produce(spec, event)
                    if produced is None:
                        submit(record, event)
                    else:
                        submit(lambda *a: record(gen.finish(*a)), spec, event, *produced)
            finally:
                while pending:
                    pending.pop().result()
                if writer is not None:
                    writer.shutdown(wait=True)
            loop_seconds = time.perf_counter() - t_loop
            env["weights"] = weights.record()
            if method_env:
                env["method_env"] = gen.env_record()
            return GenerationOutcome(env, load_seconds, loop_seconds)
        finally:
            gen.close()

    def score(self, job: ScoreJob, record: Callable[[str, dict[str, tuple[str, Any]]], None], *,
              progress: bool = True) -> dict[str, Any]:
        from tqdm import tqdm

        from ..memory import reuse_freed_memory

        reuse_freed_memory()  # large per-batch buffers re-used instead of page-faulted in anew (kdbench.memory)
        active, seconds, ids = job.active, job.seconds, job.clip_ids
        need_gt = any(m.info.needs_gt for m in active.values())

        def load(cid: str):
            return prefetch(job.ds.get(cid), job.events[cid], job.store.video_path(cid), need_gt)

        with ThreadPoolExecutor(1, thread_name_prefix="kdbench-decode") as decoder, \
                ThreadPoolExecutor(1, thread_name_prefix="kdbench-cpu-metrics") as side:
            nxt = decoder.submit(load, ids[0]) if ids and active else None
            for i, cid in enumerate(tqdm(ids, desc=job.desc, unit="clip", disable=not progress or not active)):
                if nxt is None:  # no metric to run: every clip's outcome is empty
                    record(cid, {})
                    continue
                clip, decode_s = nxt.result()
                seconds["decode"] = seconds.get("decode", 0.0) + decode_s
                nxt = decoder.submit(load, ids[i + 1]) if i + 1 < len(ids) else None
                record(cid, score_one(active, clip.spec, job.events[cid], clip.video_path, clip=clip,
                                      seconds=seconds, side=side))
                del clip
        return {"name": "local", "workers": 1}
