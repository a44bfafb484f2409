"""The recforge retraining pipeline for Kubeflow Pipelines (kfp v2).

One container component per stage, each running ``recforge pipeline <stage> --run-id <job id>``
in the recforge image (``deploy/docker/Dockerfile`` builds it), chained in the stage order.
All steps of a pipeline job share the job's id as the run id, so they add to one run record; a
retried step finds its stage done and does nothing. The stages keep their state in the
recforge home, which must therefore be a volume every step mounts at the same path (a
ReadWriteMany PersistentVolumeClaim, e.g. with kfp-kubernetes:
``kubernetes.mount_pvc(task, pvc_name="recforge", mount_path="/data/recforge")``
on each task); the pipeline lock in the home keeps a job from overlapping a local scheduler.

Compile (no cluster needed)::

    python deploy/kubeflow/pipeline.py --image registry.example.com/recforge:0.1.0 --out recforge.yaml

and upload the YAML, or submit it with ``kfp.Client().create_run_from_pipeline_package``. A
recurring run every 10 minutes is the Kubeflow equivalent of ``recforge pipeline schedule``.
"""

import argparse  # no "from __future__ import annotations": kfp reads the real annotations
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

#: The stages, in order (recforge.pipeline.STAGES; kept literal so this file needs only kfp).
STAGES = ("ingest", "build", "tune", "train", "evaluate", "gate", "precompute", "publish", "prune")
DEFAULT_IMAGE = "recforge:0.1.0"
PIPELINE_NAME = "recforge-retrain"


def stage_component(stage: str, image: str) -> Any:
    """A container component running ``recforge --home HOME [--config FILE] pipeline <stage>
    --run-id RUN_ID``; an empty ``config`` means none. The values reach the shell as positional
    parameters, never spliced into the script, so they need no quoting."""
    script = f'exec recforge --home "$0" ${{1:+--config "$1"}} pipeline {stage} --run-id "$2"'

    def component(home: str, run_id: str, config: str = "") -> dsl.ContainerSpec:
        return dsl.ContainerSpec(image=image, command=["sh", "-c", script], args=[home, config, run_id])

    component.__name__ = f"recforge_{stage}"
    component.__doc__ = f"recforge pipeline {stage}"
    return dsl.container_component(component)


def build_pipeline(image: str = DEFAULT_IMAGE) -> Callable[..., Any]:
    """The pipeline function, its steps running ``image``."""
    components = {stage: stage_component(stage, image) for stage in STAGES}

    @dsl.pipeline(name=PIPELINE_NAME, description="recforge: ingest, build, train, evaluate, gate, publish")
    def recforge_pipeline(home: str = "/data/recforge", config: str = "") -> None:
        previous = None
        for stage in STAGES:
            task = components[stage](home=home, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, config=config)
            task.set_display_name(stage)
            task.set_caching_options(False)  # every stage reads the home's current state
            if previous is not None:
                task.after(previous)
            previous = task

    return recforge_pipeline


def compile_pipeline(out: str | Path, image: str = DEFAULT_IMAGE) -> Path:
    """Compile the pipeline to a YAML package at ``out``."""
    out = Path(out)
    compiler.Compiler().compile(build_pipeline(image), package_path=str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="recforge container image")
    parser.add_argument("--out", default="recforge_pipeline.yaml", help="YAML package to write")
    args = parser.parse_args()
    print(compile_pipeline(args.out, args.image))


if __name__ == "__main__":
    main()
