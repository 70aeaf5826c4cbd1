"""Task configs: what to evaluate on which data. Typed sections, so a typo in a task list is an error up front."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from mmcl.config import Section
from mmcl.data.config import ImageLimits

Modality = Literal["image", "text", "audio"]
DEFAULT_KS = (1, 5, 10)  # recall@k cut-offs, as CLIP_benchmark reports
NAME_ORDER = ("image", "audio", "text")  # modalities in default names: text last, as retrieval pairs it


class DataSpec(Section):
    """Where a task's samples come from."""

    path: str = Field(description="A shard folder (CLIP_benchmark wds layout: *.tar or test/*.tar, classnames.txt, "
                                  "zeroshot_classification_templates.txt), a CLASS/NAME.ext folder, or a "
                                  ".csv/.tsv/.jsonl manifest.")
    format: Literal["auto", "shards", "class_folders", "manifest"] = Field(
        "auto", description="How to read `path`; auto: a file is a manifest, a folder with .tar files is shards, "
                            "any other folder is class folders.")
    classnames: str | None = Field(None, description="File with one class name (label text) per line, in label "
                                                     "order; default: the dataset's classnames.txt or folder names.")
    split: str | None = Field(None, description="A part of `path`: shards in PATH/SPLIT/*.tar (CLIP_benchmark's "
                              "train/ and test/), class folders in PATH/SPLIT/CLASS/, or the manifest rows whose "
                              "`split` column holds it (class names from label text still come from every row). "
                              "null: shards in PATH or PATH/test, class folders in PATH, every manifest row.")


class AudioWindowsConfig(Section):
    """How an audio item longer than the audio tower's clip is embedded."""

    mode: Literal["first", "all"] = Field(
        "first", description="first: the clip's first window (clip_seconds of the tower's front end), as training "
                             "reads it; all: every window, their embeddings averaged and re-normalised (as ImageBind "
                             "averages its clips), so a sound anywhere in a long file counts.")
    stride_seconds: float | None = Field(None, gt=0, description="With mode all: seconds from one window's start to "
                                                                 "the next; null: the clip length (side by side).")
    max_seconds: float = Field(600.0, gt=0, description="With mode all: seconds read from each file at most (memory "
                                                        "and time grow with it).")


MULTILABEL_DESCRIPTION = (
    "auto: multi-label when the data carries label lists (shards: `cls` such as `3,7`; JSON Lines: a list; "
    "CSV/TSV: `dog;cat`), scored by per-class average precision and its mean over the classes with a positive "
    "item (mAP); true: multi-label even without lists (a plain label is a list of one); false: single-label, "
    "and label lists are an error.")


class _Task(Section):
    name: str | None = Field(None, description="Name for logs and result keys; default: TYPE/MODALITIES, e.g. "
                                                "zeroshot_classification/image or retrieval/image-text.")
    data: DataSpec = Field(description="The evaluation data.")
    audio_windows: AudioWindowsConfig = Field(default_factory=AudioWindowsConfig,
                                              description="Audio items: their first window, or every window.")

    @property
    def label(self) -> str:
        """The name, else the default, which leaves out the data's path so that the same task on the same data
        is named alike from class folders, shards or a manifest, and from `mmcl eval` or training."""
        return self.name or f"{self.type}/{'-'.join(sorted(self.measured, key=NAME_ORDER.index))}"


class ZeroShotClassificationTask(_Task):
    """Classify image or audio items against text prompts built from class names and templates."""

    type: Literal["zeroshot_classification"] = Field(description="Task kind.")
    modality: Literal["image", "audio"] = Field("image", description="The query modality.")
    templates: list[str] | str | None = Field(
        None, description="Prompt templates with {c} for the class name: a list, or a file with one per line; "
                          "default: the dataset's templates file, else the built-in set for the modality (the same for "
                          "every data route). The result records the set used and where it came from.")
    class_prompts: dict[str, list[str]] | str | None = Field(
        None, description="Class-specific prompts (CuPL): {class name: [whole prompts]}, or a JSON file of that; a "
                          "class's prompts are its generic templates filled with its name plus its own, averaged as "
                          "one ensemble (templates: [] uses the class prompts alone). Keys must be class names.")
    allow_missing_classes: bool = Field(
        False, description="Accept class names that no sample carries (they still compete as wrong answers; "
                           "multi-label: they get no AP and are counted); off, such a mismatch between class "
                           "names and labels is an error.")
    multilabel: bool | Literal["auto"] = Field("auto", description=MULTILABEL_DESCRIPTION)

    @property
    def measured(self) -> tuple[str, ...]:
        return (self.modality,)


class _ModalitiesTask(_Task):
    """A task over several modalities of the same items, which must differ."""

    @field_validator("modalities", check_fields=False)
    @classmethod
    def _distinct(cls, value):
        if len(set(value)) != len(value):
            raise ValueError(f"the modalities must differ, got {list(value)}")
        return value

    @property
    def measured(self) -> tuple[str, ...]:
        return tuple(self.modalities)


class RetrievalTask(_ModalitiesTask):
    """Retrieve items of one modality from another, in both directions; items may have several captions."""

    type: Literal["retrieval"] = Field(description="Task kind.")
    modalities: tuple[Modality, Modality] = Field(("image", "text"), description="The two modalities.")
    ks: list[int] = Field(list(DEFAULT_KS), description="Cut-offs for recall@k.")


class MultimodalRetrievalTask(_ModalitiesTask):
    """For each of three modalities, retrieve it from the other two of the same item."""

    type: Literal["multimodal_retrieval"] = Field(description="Task kind.")
    modalities: tuple[Modality, Modality, Modality] = Field(("image", "text", "audio"),
                                                            description="The three modalities.")
    scorings: list[Literal["sum", "multilinear"]] = Field(
        ["sum", "multilinear"], description="sum: sum of pairwise cosine similarities; multilinear: Symile's "
                                            "multilinear inner product.")
    ks: list[int] = Field(list(DEFAULT_KS), description="Cut-offs for recall@k.")


class GeometryTask(_ModalitiesTask):
    """Modality gap, separability, alignment, uniformity and effective rank of the embeddings."""

    type: Literal["geometry"] = Field(description="Task kind.")
    modalities: list[Modality] = Field(["image", "text"], min_length=2,
                                       description="Two or more modalities; each pair is measured. Text: each "
                                                   "item's first caption.")
    max_probe_samples: int = Field(10_000, gt=1, description="Items per modality used by the linear-separability "
                                                             "probe (the first ones, in source order).")


DEFAULT_WEIGHT_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # log-spaced, as CLIP_benchmark's search spans


class LinearProbeTask(_Task):
    """Train a multinomial logistic regression on the frozen, normalised image or audio embeddings of `train_data`
    and score it on `data` (CLIP_benchmark's linear probe); with `fewshot_k`, on k items per class (few-shot).
    Multi-label data gets one-vs-rest logistic regression, scored by mAP."""

    type: Literal["linear_probe"] = Field(description="Task kind.")
    modality: Literal["image", "audio"] = Field("image", description="The embedded modality.")
    data: DataSpec = Field(description="The test data, labelled; its class names must equal train_data's.")
    train_data: DataSpec = Field(description="The labelled data the classifier is trained on (a validation split "
                                             "for choosing the weight decay is carved from it).")
    fewshot_k: int | None = Field(None, gt=0, description="Items per class drawn (seeded) from train_data; a class "
                                                         "with fewer uses all it has (counted in the result); "
                                                         "multi-label: k positive items per class, drawn class by "
                                                         "class and pooled (an item drawn for one class may be a "
                                                         "positive of others too); null: all items.")
    multilabel: bool | Literal["auto"] = Field(
        "auto", description=MULTILABEL_DESCRIPTION + " A multi-label probe is one-vs-rest logistic regression.")
    seed: int = Field(0, ge=0, description="Seed of the few-shot draw and of the validation split.")
    validation_fraction: float = Field(0.2, gt=0, lt=1,
                                       description="Share of each class's training items held out (rounded down) "
                                                   "to choose the weight decay; multi-label: that share of all "
                                                   "training items, drawn by the seed.")
    weight_decays: list[float] = Field(list(DEFAULT_WEIGHT_DECAYS), min_length=1,
                                       description="L2 strengths tried, each > 0; the one with the best validation "
                                                   "top-1 (multi-label: mAP; ties: the largest) is refit on all "
                                                   "training items. A single value skips the validation split.")
    max_iterations: int = Field(1000, gt=0, description="L-BFGS iterations per fit at most.")

    @field_validator("weight_decays")
    @classmethod
    def _positive_distinct(cls, value):
        if any(not w > 0 for w in value) or len(set(value)) != len(value):
            raise ValueError(f"weight decays must be distinct and > 0, got {value}")
        return value

    @property
    def measured(self) -> tuple[str, ...]:
        return (self.modality,)


class BootstrapConfig(Section):
    """Percentile-bootstrap confidence intervals of the headline metrics (see `mmcl.eval.bootstrap`)."""

    samples: int = Field(1000, ge=100, description="Resamples of the evaluation items (queries), each drawn with "
                                                   "replacement; at least 100, so the tail quantiles do not rest on "
                                                   "a handful of draws.")
    seed: int = Field(0, ge=0, description="Seed of the resampling; the same seed gives the same intervals.")
    level: float = Field(0.95, gt=0, lt=1, description="Confidence level: the interval spans the (1 - level)/2 "
                                                       "and (1 + level)/2 quantiles of the resampled metric.")


class TriggerConfig(Section):
    """A backdoor trigger, as `mmcl shards poison` plants it (see `mmcl.data.triggers`)."""

    kind: Literal["patch", "blended", "random_noise"] = Field("patch", description="Trigger kind.")
    patch_size: int = Field(16, gt=0, description="patch: side in pixels.")
    position: tuple[int, int] | None = Field(None, description="patch: top-left corner [x, y]; null: a place drawn "
                                                               "per image from its pixels (the same in every run).")
    alpha: float = Field(0.2, gt=0, le=1, description="blended: pattern weight; random_noise: amplitude / 255.")
    seed: int = Field(0, description="Seed of the trigger pattern: the poisoning's --seed.")


class BackdoorTask(_Task):
    """Attack success rate of a trigger: every image whose label is not the target gets the trigger and is classified
    zero-shot; the share sent to the target class is the attack success rate, read beside the clean accuracy and
    the share of clean images already sent there."""

    type: Literal["backdoor"] = Field(description="Task kind.")
    target: str = Field(description="The class name poisoned captions point to (must be one of the class names).")
    trigger: TriggerConfig = Field(default_factory=TriggerConfig, description="The trigger, as poisoned.")
    templates: list[str] | str | None = Field(None, description="Prompt templates, as for zeroshot_classification.")

    @property
    def measured(self) -> tuple[str, ...]:
        return ("image",)


EvalTask = Annotated[Union[ZeroShotClassificationTask, RetrievalTask, MultimodalRetrievalTask, GeometryTask,
                           LinearProbeTask, BackdoorTask], Field(discriminator="type")]


class EvalConfig(Section):
    """A list of evaluation tasks and how to batch them (e.g. a trainer's periodic evaluation, or `mmcl eval --tasks`)."""

    tasks: list[EvalTask] = Field(description="Tasks to run, in order; each has a `type`.")
    batch_size: int = Field(64, gt=0, description="Items a loader hands over at a time, rounded to a multiple of the "
                                                   "fixed 32-row forward pass (results do not depend on it).")
    num_workers: int = Field(0, ge=0, description="Loader worker processes decoding items.")
    image_limits: ImageLimits = Field(default_factory=ImageLimits,
                                      description="Images skipped (and counted) from their header alone; large "
                                      "JPEGs decoded at the reduced scale the image tower needs.")
    bootstrap: BootstrapConfig | None = Field(
        None, description="Confidence intervals for top-1/top-5/mean per-class recall, mAP and recall@k, e.g. "
                          "{samples: 1000, seed: 0, level: 0.95}; null: none (geometry metrics never get one).")

    @model_validator(mode="after")
    def _distinct_names(self):
        names = [task.label for task in self.tasks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:  # results and logged metrics are keyed by name
            raise ValueError(f"several tasks are named {repeated[0]!r}; give each a distinct `name` (unnamed "
                             "tasks are named TYPE/MODALITIES)")
        return self
