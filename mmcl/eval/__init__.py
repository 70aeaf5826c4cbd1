"""Zero-shot evaluation: classification, retrieval, embedding geometry.

    from mmcl.eval import EvalConfig, run_tasks
    results = run_tasks(model, transforms.eval, tokenizer, EvalConfig(tasks=[...]).tasks)

Modules: `tasks` (task configs), `run` (running them on a model), `datasets`/`loading`/`embed` (data to
embeddings), `templates` (prompt templates), `zeroshot`/`metrics`, `retrieval`, `geometry` (the measures),
`report` (result files), `summary`, `plots` and `compare` (what people read), `openclip` (open_clip models by
name), `models` (any model by name or checkpoint folder).
"""

from mmcl.eval.report import scalars
from mmcl.eval.models import load_eval_model
from mmcl.eval.run import TaskOutput, evaluate_task, run_evaluation, run_tasks
from mmcl.eval.tasks import (DataSpec, EvalConfig, EvalTask, GeometryTask, MultimodalRetrievalTask, RetrievalTask,
                             ZeroShotClassificationTask)

__all__ = [
    "DataSpec",
    "EvalConfig",
    "EvalTask",
    "GeometryTask",
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
