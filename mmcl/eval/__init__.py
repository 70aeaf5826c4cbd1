"""Zero-shot evaluation: classification, retrieval, embedding geometry; and linear probes on frozen embeddings.

    from mmcl.eval import EvalConfig, run_tasks
    results = run_tasks(model, transforms.eval, tokenizer, EvalConfig(tasks=[...]).tasks)

Modules: `tasks` (task configs), `run` (running them on a model), `datasets`/`loading`/`embed` (data to
embeddings; multi-label data: `label_lists`), `templates` (prompt templates), `zeroshot`/`metrics`, `retrieval`,
`geometry`, `linear_probe`, `average_precision` (the measures), `bootstrap` (confidence intervals of the measures),
`report` (result files), `summary`, `plots` and `compare` (what people read), `openclip` (open_clip models by
name), `models` (any model by name or checkpoint folder).
"""

from mmcl.lazy import lazy_exports

__all__ = [
    "DataSpec",
    "EvalConfig",
    "EvalTask",
    "GeometryTask",
    "LinearProbeTask",
    "MultimodalRetrievalTask",
    "RetrievalTask",
    "TaskOutput",
    "ZeroShotClassificationTask",
    "evaluate_task",
    "load_eval_model",
    "run_evaluation",
    "run_tasks",
    "scalars",
]
__getattr__, __dir__ = lazy_exports(__name__, {
    **{name: "tasks" for name in ("DataSpec", "EvalConfig", "EvalTask", "GeometryTask", "LinearProbeTask",
                                  "MultimodalRetrievalTask", "RetrievalTask", "ZeroShotClassificationTask")},
    **{name: "run" for name in ("TaskOutput", "evaluate_task", "run_evaluation", "run_tasks")},
    "load_eval_model": "models", "scalars": "report"})
