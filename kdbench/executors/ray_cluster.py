"""The Ray executor: ``kdbench run|eval --executor ray`` on every GPU of a machine or a cluster.

One long-lived actor per worker loads the method (or the metric networks) once and takes clips from the driver
until the dataset is done. The driver stays the run store's only writer (``events.jsonl``, ``env.json``,
``metrics.json``); actors write each video atomically where it will live (or hand its bytes back when they cannot
see the run folder), so a run can be started with one executor and finished with the other.

    ray.init(address)            # None: an embedded local instance; "auto" or "ray://…": an existing cluster
    actors = [GenerateActor.options(num_gpus=g, max_restarts=R, max_task_retries=T).remote(...) for _ in workers]
    while clips: give each idle actor the next clip; ray.wait(); record the event

Faults: a crashed actor is restarted by Ray and its clip retried (``MAX_RESTARTS``/``MAX_TASK_RETRIES``); a clip that
still fails is recorded as a per-clip failure; Ctrl-C cancels the cluster work and keeps every finished clip.
Ray is optional (``pip install kdbench[ray]``) and imported only here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..envinfo import collect_env
from ..errors import KdbenchError
from ..generation import ClipGenerator, check_weights
from ..scoring import instantiate_metric, score_one
from .base import Executor, GenerationOutcome, ScoreJob

log = logging.getLogger("kdbench.executor")

MAX_RESTARTS = 3
"""How often Ray restarts a crashed actor (then its remaining clips go to the others)."""
MAX_TASK_RETRIES = 2
"""How often a clip whose actor crashed is retried before it is recorded as failed."""
FORWARDED_ENV = ("KDBENCH_HOME", "KDBENCH_DATA", "KDBENCH_HDTF", "KDBENCH_OFFLINE", "KDBENCH_ALLOW_UNVERIFIED",
                 "KDBENCH_PLUGINS", "PYTHONPATH")
"""Environment variables the actors need to see what the driver sees (weights cache, datasets, plugins)."""


def _ray():
    try:
        import ray
    except ImportError as e:
        raise KdbenchError("--executor ray needs Ray: `pip install 'kdbench[ray]'` (or `pip install ray`)") from e
    return ray


def init_ray(address: str | None, num_cpus: int | None = None) -> Any:
    """Start an embedded Ray instance (``address`` None) or join a cluster (``auto``, ``ray://host:10001``, an
    address from ``ray start --head``). Returns the ray module. The actors get the driver's kdbench environment."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    repo = str(Path(__file__).resolve().parents[2])
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False,
                              "ignore_reinit_error": True}
    if address is None:
        kwargs.update(include_dashboard=False, num_cpus=num_cpus)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise KdbenchError(f"cannot start or join Ray at {address or 'a new local instance'}: {e}. Start a "
                           "cluster with `ray start --head` and pass --ray-address auto, or leave --ray-address "
                           "out to start one here") from e
    finally:
        from ..interrupt import reinstall

        reinstall()  # ray.init replaces the SIGTERM handler with sys.exit: SIGTERM stays handled as SIGINT
    return ray


def worker_count(ray, device: str, workers: int | None, gpus_per_worker: float) -> int:
    """``workers``, else one per GPU share (CUDA) or one per CPU of the cluster."""
    if workers is not None:
        if workers < 1:
            raise KdbenchError(f"--workers must be at least 1 (got {workers})")
        return workers
    res = ray.cluster_resources()
    if str(device).startswith("cuda"):
        if gpus_per_worker <= 0:
            raise KdbenchError(f"--gpus-per-worker must be > 0 (got {gpus_per_worker})")
        n = int(res.get("GPU", 0) / gpus_per_worker)
        if n < 1:
            raise KdbenchError(f"--device {device} but the Ray cluster has {res.get('GPU', 0)} GPU(s): join a "
                               "cluster with GPUs (--ray-address auto) or use --device cpu")
        return n
    return max(1, int(res.get("CPU", 1)))


def _where() -> dict[str, Any]:
    """Which node, process and GPU(s) this actor runs on (recorded per clip)."""
    import ray

    ctx = ray.get_runtime_context()
    return {"node": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
            "gpus": [str(g) for g in ray.get_gpu_ids()]}


class _GenerateWorker:
    """Actor body: one :class:`kdbench.generation.ClipGenerator`, loaded once (again after a restart)."""

    def __init__(self, config: dict[str, Any], run_dir: str, warmup_spec, warmup: int):
        self.where = _where()
        self.local_store = Path(run_dir).is_dir()
        out_dir = run_dir if self.local_store else self._scratch()
        self.gen = ClipGenerator(config, out_dir)
        self.load_seconds = self.gen.load(warmup_spec, warmup)

    @staticmethod
    def _scratch() -> str:
        import tempfile

        from ..runstore import RunStore

        d = tempfile.mkdtemp(prefix="kdbench-actor-")
        (RunStore(d).root / "videos").mkdir(parents=True, exist_ok=True)
        return d

    def info(self) -> dict[str, Any]:
        return {"load_seconds": self.load_seconds, "method_env": self.gen.env_record(),
                "warmup": self.gen.warmup_record, **self.where}

    def close(self) -> None:
        self.gen.close()

    def generate(self, spec) -> tuple[dict[str, Any], bytes | None]:
        event = self.gen.generate(spec)
        event["worker"] = self.where
        data = None
        if not self.local_store and event.get("status") == "ok":  # no shared run folder: the driver writes it
            path = self.gen.store.video_path(spec.clip_id)
            data = path.read_bytes()
            path.unlink()
        return event, data


class _ScoreWorker:
    """Actor body: the active metrics, built once; scores clips and exports set-level state at the end."""

    def __init__(self, names: list[str], scoped: dict[str, dict[str, Any]], device: str, context: dict[str, Any]):
        from ..memory import reuse_freed_memory
        from ..weights import WeightsManager

        reuse_freed_memory()  # as the local evaluator does (kdbench.memory)
        self.where = _where()
        self.seconds: dict[str, float] = {}
        weights = WeightsManager()
        self.active: dict[str, Any] = {}
        for name in names:
            metric, skipped = instantiate_metric(name, scoped.get(name, {}), device, weights, context)
            if metric is not None:
                self.active[name] = metric

    def score(self, spec, event: dict[str, Any], video_path: str) -> dict[str, tuple[str, Any]]:
        out = score_one(self.active, spec, event, Path(video_path), seconds=self.seconds)
        for name, (kind, _) in out.items():
            if kind == "weights":
                del self.active[name]
        return out

    def info(self) -> dict[str, Any]:
        return self.where

    def export_states(self) -> dict[str, Any]:
        return {name: m.export_state() for name, m in self.active.items()}

    def timings(self) -> dict[str, float]:
        return self.seconds


def _actor_options(device: str, gpus_per_worker: float) -> dict[str, Any]:
    opts: dict[str, Any] = {"max_restarts": MAX_RESTARTS, "max_task_retries": MAX_TASK_RETRIES, "num_cpus": 1}
    if str(device).startswith("cuda"):
        opts["num_gpus"] = gpus_per_worker
    return opts


def _drain(ray, actors: list, items: list, submit: Callable, on_result: Callable[[Any, Any], None],
           on_error: Callable[[Any, BaseException], None], progress_bar=None) -> None:
    """Give each actor one item at a time until ``items`` is empty; ``on_result(item, value)`` per finished item.

    An actor whose task failed after Ray's retries is dropped (its item goes to ``on_error``); if none is left
    the remaining items are failed too.
    """
    queue = list(items)
    in_flight: dict[Any, tuple[Any, Any]] = {}
    idle = list(actors)
    try:
        while queue or in_flight:
            while idle and queue:
                actor, item = idle.pop(0), queue.pop(0)
                in_flight[submit(actor, item)] = (actor, item)
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            actor, item = in_flight.pop(ref)
            try:
                value = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                log.error("worker failed on %s: %s", item, e)
                on_error(item, e)
                if isinstance(e, ray.exceptions.RayActorError):
                    if not idle and not in_flight:  # that was the last actor
                        for rest in queue:
                            on_error(rest, e)
                        queue.clear()
                    continue
            else:
                on_result(item, value)
            idle.append(actor)
            if progress_bar is not None:
                progress_bar.update(1)
    except KeyboardInterrupt:  # SIGINT, or SIGTERM (kdbench.interrupt): stop the actors; finished items are kept
        for ref in in_flight:
            with contextlib.suppress(Exception):
                ray.cancel(ref)  # Ray refuses force=True for actor tasks: the actors are killed instead
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)  # their process pools (CPBD) end with them (kdbench.interrupt.die_with_parent)
        raise


def _cluster_record(ray, name: str, workers: int, address: str | None, infos: list[dict[str, Any]]) -> dict:
    nodes = {n["NodeID"]: {"ip": n.get("NodeManagerAddress"), "resources": n.get("Resources", {})}
             for n in ray.nodes() if n.get("Alive")}
    return {"name": name, "workers": workers, "address": address or "local (embedded)",
            "ray_version": ray.__version__, "nodes": nodes, "actors": infos}


class RayExecutor(Executor):
    """``--executor ray``: one long-lived actor per worker (per GPU share on CUDA, per CPU otherwise)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, gpus_per_worker: float = 1.0):
        self.address, self.workers, self.gpus_per_worker = address, workers, gpus_per_worker

    def generate(self, config: dict[str, Any], store, todo: list, record: Callable[[dict[str, Any]], None], *,
                 warmup: int = 1, progress: bool = True) -> GenerationOutcome:
        """Generate ``todo`` clips on Ray actors; ``record(event)`` runs on the driver for each finished clip.

        The environment is the driver's, with the executor, nodes and actors; the load time is the slowest
        actor's.
        """
        from tqdm import tqdm

        from ..files import atomic_path
        from ..weights import WeightsManager

        weights = WeightsManager()
        check_weights(config["method"], weights)  # fail on the driver, before any actor starts
        ray = init_ray(self.address)
        n = min(worker_count(ray, config["device"], self.workers, self.gpus_per_worker), len(todo))
        Actor = ray.remote(**_actor_options(config["device"], self.gpus_per_worker))(_GenerateWorker)
        actors = [Actor.remote(config, str(store.root.resolve()), todo[0], warmup) for _ in range(n)]
        infos = ray.get([a.info.remote() for a in actors])
        load_seconds = max(i["load_seconds"] for i in infos)
        warmups = [i.pop("warmup", None) for i in infos]
        store.append_event({"event": "load", "seconds": load_seconds, "config_hash": config["config_hash"],
                            "time": time.time(), "executor": "ray", "workers": n, "warmup": warmups[0]})
        env = collect_env(config["device"])
        method_env = [i.pop("method_env") for i in infos][0]
        env["executor"] = _cluster_record(ray, "ray", n, self.address, infos)
        env["weights"] = weights.record()
        if method_env:
            env["method_env"] = method_env
        store.write_env(env)

        def on_result(spec, value) -> None:
            event, data = value
            if data is not None:
                with atomic_path(store.video_path(spec.clip_id)) as tmp:
                    tmp.write_bytes(data)
            record(event)

        def on_error(spec, e: BaseException) -> None:
            record({"clip_id": spec.clip_id, "config_hash": config["config_hash"], "time": time.time(),
                    "status": "failed", "error": f"worker crashed {MAX_TASK_RETRIES + 1} times: "
                                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})

        t_loop = time.perf_counter()
        with tqdm(total=len(todo), desc=f"run {config['method']} (ray, {n} workers)", unit="clip",
                  disable=not progress) as bar:
            _drain(ray, actors, todo, lambda a, spec: a.generate.remote(spec), on_result, on_error, bar)
        loop_seconds = time.perf_counter() - t_loop
        ray.wait([a.close.remote() for a in actors], num_returns=len(actors), timeout=60)  # baseline workers exit
        for a in actors:
            ray.kill(a)
        return GenerationOutcome(env, load_seconds, loop_seconds)

    def score(self, job: ScoreJob, record: Callable[[str, dict[str, tuple[str, Any]]], None], *,
              progress: bool = True) -> dict[str, Any]:
        """Score the clips on Ray actors holding the metric networks; ``record(clip_id, outcomes)`` per clip on the
        driver, then the actors' set-level states are merged into the driver's ``job.active`` metrics. Returns
        the executor record for ``metrics.json``."""
        from tqdm import tqdm

        if not job.active:  # nothing to score: no cluster to start
            from .local import LocalExecutor

            return LocalExecutor().score(job, record, progress=progress)
        ray = init_ray(self.address)
        n = min(worker_count(ray, job.device, self.workers, self.gpus_per_worker), max(1, len(job.clip_ids)))
        Actor = ray.remote(**_actor_options(job.device, self.gpus_per_worker))(_ScoreWorker)
        actors = [Actor.remote(list(job.active), job.scoped, job.device, job.context) for _ in range(n)]
        root = str(job.store.root.resolve())

        def submit(actor, cid: str):
            return actor.score.remote(job.ds.get(cid), job.events[cid], str(Path(root) / "videos" / f"{cid}.mp4"))

        def on_error(cid: str, e: BaseException) -> None:
            why = f"worker crashed {MAX_TASK_RETRIES + 1} times: {type(e).__name__}"
            record(cid, {name: ("fail", why) for name in job.active})

        with tqdm(total=len(job.clip_ids), desc=f"{job.desc} (ray, {n} workers)", unit="clip",
                  disable=not progress) as bar:
            _drain(ray, actors, job.clip_ids, submit, record, on_error, bar)
        states = ray.get([a.export_states.remote() for a in actors])
        for name, metric in job.active.items():
            metric.merge_states([s.get(name) for s in states])
        infos = ray.get([a.info.remote() for a in actors])
        for t in ray.get([a.timings.remote() for a in actors]):  # summed over the actors (they overlap in time)
            for name, v in t.items():
                job.seconds[name] = job.seconds.get(name, 0.0) + v
        for a in actors:
            ray.kill(a)
        return _cluster_record(ray, "ray", n, self.address, infos)
