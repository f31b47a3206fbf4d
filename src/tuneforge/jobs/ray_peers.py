"""A training's ranks on other Ray nodes.

The Ray executor runs a training in several processes in a placement group of one bundle per
rank, the job's actor in bundle 0 (`ray_runner.py`). `ray_peers` is what the `train` worker in
that actor hands its launcher (`training/parallel/ray_ranks.py`) so ranks 1..N-1 run in the
other bundles: each rank's actor asks for its bundle's resources, is named after the job
(`tuneforge-job-{id}-rank-{n}`, in the executor's namespace; its runner leaves them to
the group), and gets the starting model's
files on its node as the worker does (`NodeModel`; the settings it needs for that travel as a
reference into Ray's object store, never as an argument). Anywhere else (a local worker, a
one-process job on Ray) there are no peers.
"""

from __future__ import annotations

import sys
from typing import Any

from tuneforge.jobs.ray_runner import RANK_INFIX, actor_name
from tuneforge.jobs.workers.starting_model import Continued, NodeModel
from tuneforge.settings import Settings
from tuneforge.training.parallel.ray_ranks import Peers

#: A bundle's resources that are actor options of their own (the others go in `resources`).
OPTIONS = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory"}


def ray_peers(
    settings: Settings, job_id: str, base_model: str, continued: Continued | None
) -> Peers | None:
    """The peers of the job's ranks when this process is a Ray actor in a placement group."""
    if "ray" not in sys.modules:  # not in a Ray worker: nothing imported it
        return None
    import ray

    if not ray.is_initialized():
        return None
    group = ray.util.get_current_placement_group()
    if group is None:
        return None
    bundles = group.bundle_specs
    public = settings.model_copy(update={"proxy_secret": None})
    context = ray.get_runtime_context()
    return Peers(
        group=group,
        size=len(bundles),
        options=bundle_options(bundles[-1]),
        model=NodeModel(base_model, continued, ray.put(public.model_dump_json())),
        namespace=settings.ray_namespace,
        name=f"{actor_name(job_id)}{RANK_INFIX}",
        node=context.get_node_id(),
        address=ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
    )


def bundle_options(bundle: dict[str, float]) -> dict[str, Any]:
    """The options of an actor that takes all of `bundle`."""
    options: dict[str, Any] = {"num_cpus": 0, "num_gpus": 0}
    extra: dict[str, float] = {}
    for name, amount in bundle.items():
        if name in OPTIONS:
            options[OPTIONS[name]] = int(amount) if name == "memory" else amount
        else:
            extra[name] = amount
    if extra:
        options["resources"] = extra
    return options
