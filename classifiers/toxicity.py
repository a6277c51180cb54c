"""Detoxify toxicity scores → abusive signals (optional extra: ``vigil[detoxify]``).

    detector = DetoxifyDetector(checkpoint=Path("toxic.prepared.ckpt"), config_dir=Path("bert"))
    signals = detector.detect_many([Input(text="..."), ...])   # one list per item, batched

Nothing is downloaded at run time. Detoxify asks the Hugging Face hub for the checkpoint's
``arch.args.model_type`` even when it is given a local config directory, so a checkpoint only
loads offline once ``vigil models prepare`` has pointed that field at the local directory.
Checkpoints are pickles: load only files the administrator names.

Each label at or above its threshold raises one signal over the whole text (span ``[0, len)``):

=================================  ======================  ===================  ===========
label                              flag                    cell                 severity
=================================  ======================  ===================  ===========
toxicity, insult, obscene          abusive                 conduct.aggressive   low; medium
                                                                                halfway to 1
severe_toxicity                    abusive                 conduct.aggressive   high
threat                             abusive, tag threat     content.aggressive   high
identity_attack                    abusive, tag hate       content.values       high
sexual_explicit                    abusive                 content.sexual       medium
=================================  ======================  ===================  ===========

Every label's score also travels as a flagless signal (rule ``detoxify.<label>``), which the
combiner puts into ``Verdict.scores``. torch, transformers and detoxify are imported only when a
detector is built, so ``vigil --help`` stays fast.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifiers.base import Input, NotConfigured, Signal
from classifiers.taxonomy import Cell, Flag, Severity, Tag

__all__ = [
    "DEFAULT_THRESHOLDS",
    "LABEL_RULES",
    "DetoxifyDetector",
    "LabelRule",
    "arch_args",
    "config_dir_problem",
    "load_checkpoint",
    "signals_for",
]

INSTALL_HINT = "install torch==2.13.0 (the CPU build) first, then 'vigil[detoxify]'"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")
# Detoxify's own renaming of the Jigsaw class names (detoxify.detoxify.load_checkpoint).
_RENAMED = {
    "toxic": "toxicity",
    "identity_hate": "identity_attack",
    "severe_toxic": "severe_toxicity",
}


@dataclass(frozen=True, kw_only=True)
class LabelRule:
    """What one Detoxify label means in our taxonomy."""

    flag: Flag
    cell: Cell
    severity: Severity  # at the threshold
    strong: Severity  # from halfway between the threshold and 1
    tags: frozenset[Tag] = frozenset()


def _rule(cell: str, severity: Severity, strong: Severity | None = None, *tags: Tag) -> LabelRule:
    return LabelRule(
        flag=Flag.ABUSIVE,
        cell=Cell.parse(cell),
        severity=severity,
        strong=strong or severity,
        tags=frozenset(tags),
    )


LABEL_RULES: Mapping[str, LabelRule] = {
    "toxicity": _rule("conduct.aggressive", Severity.LOW, Severity.MEDIUM),
    "insult": _rule("conduct.aggressive", Severity.LOW, Severity.MEDIUM),
    "obscene": _rule("conduct.aggressive", Severity.LOW, Severity.MEDIUM),
    "severe_toxicity": _rule("conduct.aggressive", Severity.HIGH),
    "threat": _rule("content.aggressive", Severity.HIGH, None, Tag.THREAT),
    "identity_attack": _rule("content.values", Severity.HIGH, None, Tag.HATE),
    "sexual_explicit": _rule("content.sexual", Severity.MEDIUM),
}
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "toxicity": 0.8,
    "severe_toxicity": 0.5,
    "threat": 0.6,
    "insult": 0.8,
    "identity_attack": 0.6,
    "obscene": 0.9,
    "sexual_explicit": 0.7,
}


def signals_for(
    text: str, scores: Mapping[str, float], thresholds: Mapping[str, float]
) -> list[Signal]:
    """One flagless score signal per known label, plus a flagged one per threshold crossed."""
    out: list[Signal] = []
    for label, score in sorted(scores.items()):
        rule = LABEL_RULES.get(label)
        if rule is None:
            continue  # e.g. the unbiased model's identity-mention labels
        out.append(_signal(text, label, score, None, Severity.NONE))
        threshold = thresholds.get(label, math.inf)
        if score >= threshold:
            strong = score >= threshold + (1.0 - threshold) / 2
            out.append(_signal(text, label, score, rule, rule.strong if strong else rule.severity))
    return out


def _signal(
    text: str, label: str, score: float, rule: LabelRule | None, severity: Severity
) -> Signal:
    return Signal(
        detector="detoxify",
        flag=rule.flag if rule else None,
        cell=rule.cell if rule else None,
        severity=severity,
        span=(0, len(text)),
        text=text,
        score=score,
        tags=rule.tags if rule else frozenset(),
        rule=f"detoxify.{label}",
    )


def load_checkpoint(torch: Any, path: Path) -> dict[str, Any]:
    """Unpickle a Detoxify checkpoint (``weights_only=False``: only files the admin named)."""
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as err:  # a pickle can fail in any way; report it, do not crash startup
        raise NotConfigured(f"{path}: cannot read the checkpoint: {err}") from None
    if not isinstance(loaded, dict) or "config" not in loaded or "state_dict" not in loaded:
        raise NotConfigured(f"{path}: not a Detoxify checkpoint (needs 'config' and 'state_dict')")
    return loaded


def arch_args(path: Path, checkpoint: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The checkpoint's ``arch.args`` and its class names, validated."""
    try:
        args = dict(checkpoint["config"]["arch"]["args"])
        classes = [str(c) for c in checkpoint["config"]["dataset"]["args"]["classes"]]
    except (KeyError, TypeError) as err:
        raise NotConfigured(f"{path}: checkpoint config lacks {err}") from None
    missing = {"model_type", "model_name", "tokenizer_name", "num_classes"} - set(args)
    if missing:
        raise NotConfigured(f"{path}: checkpoint config.arch.args lacks {sorted(missing)}")
    if args["num_classes"] != len(classes):
        raise NotConfigured(f"{path}: num_classes {args['num_classes']} but {len(classes)} classes")
    return args, classes


def config_dir_problem(config_dir: Path, num_classes: int) -> str | None:
    """Why ``config_dir`` cannot serve a checkpoint with ``num_classes`` labels, or None."""
    config_file = config_dir / "config.json"
    if not config_file.is_file():
        return f"{config_dir} has no config.json (a local Hugging Face model directory is needed)"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"{config_file}: cannot read: {err}"
    labels = config.get("num_labels", len(config.get("id2label") or {}) or 2)
    if labels != num_classes:
        return (
            f"{config_file} has {labels} labels but the checkpoint has {num_classes}: "
            f'set "num_labels": {num_classes} (and remove id2label/label2id)'
        )
    if not any((config_dir / name).is_file() for name in TOKENIZER_FILES):
        return f"{config_dir} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)})"
    return None


class DetoxifyDetector:
    """Detoxify's multi-label toxicity model, run locally in batches on the CPU."""

    name = "detoxify"

    def __init__(
        self,
        *,
        model: str = "original-small",
        checkpoint: Path | None = None,
        config_dir: Path | None = None,
        batch_size: int = 32,
        thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS,
        threads: int = 1,
    ) -> None:
        self._thresholds = _thresholds(thresholds)
        if batch_size < 1 or threads < 1:
            raise NotConfigured("detoxify batch_size and threads must be at least 1")
        self._batch_size = batch_size
        torch, loader = _import_extra()
        path = _checkpoint_path(torch, loader.MODEL_URLS, model, checkpoint)
        folder = _config_dir(config_dir)
        loaded = load_checkpoint(torch, path)
        args, classes = arch_args(path, loaded)
        _check_prepared(path, args, folder)
        torch.set_num_threads(threads)
        self._torch = torch
        self._model, self._tokenizer = _build(loader, path, args, loaded["state_dict"], folder)
        self.labels: tuple[str, ...] = tuple(_RENAMED.get(c, c) for c in classes)
        positions = getattr(self._model.config, "max_position_embeddings", 512)
        self._max_length = int(min(self._tokenizer.model_max_length, positions))

    def detect(self, item: Input) -> list[Signal]:
        """Score one text (prefer ``detect_many``: one text at a time is many times slower)."""
        return self.detect_many([item])[0]

    def detect_many(self, items: Sequence[Input]) -> list[list[Signal]]:
        """Score texts in batches of ``batch_size``; one signal list per item, in order."""
        out: list[list[Signal]] = [[] for _ in items]
        # Similar lengths batch together, so little of each batch is padding.
        todo = sorted(
            (i for i, it in enumerate(items) if it.text.strip()), key=lambda i: len(items[i].text)
        )
        for start in range(0, len(todo), self._batch_size):
            chunk = todo[start : start + self._batch_size]
            scored = self.scores([items[i].text for i in chunk])
            for i, scores in zip(chunk, scored, strict=True):
                out[i] = signals_for(items[i].text, scores, self._thresholds)
        return out

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Raw per-label probabilities for one batch of texts (as Detoxify's ``predict``)."""
        torch = self._torch
        inputs = self._tokenizer(
            list(texts),
            return_tensors="pt",
            truncation=True,
            padding=True,
            max_length=self._max_length,
        )
        with torch.inference_mode():
            probabilities = torch.sigmoid(self._model(**inputs)[0]).tolist()
        return [dict(zip(self.labels, row, strict=True)) for row in probabilities]


def _thresholds(given: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(given) - set(LABEL_RULES))
    if unknown:
        raise NotConfigured(
            f"detoxify_thresholds: unknown labels {unknown} (known: {', '.join(LABEL_RULES)})"
        )
    merged = {**DEFAULT_THRESHOLDS, **given}
    for label, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise NotConfigured(f"detoxify_thresholds.{label}: must be a number ≥ 0 (above 1: off)")
    return {label: float(value) for label, value in merged.items()}


def _import_extra() -> tuple[Any, Any]:
    try:  # as Any: these packages are optional, and typed or not depending on the version
        torch: Any = importlib.import_module("torch")
        transformers: Any = importlib.import_module("transformers")
        loader: Any = importlib.import_module("detoxify.detoxify")
    except ImportError as err:
        missing = err.name or str(err)
        raise NotConfigured(
            f"the Detoxify extra is not installed ({missing} missing): {INSTALL_HINT}"
        ) from None
    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars in the journal
    return torch, loader


def _checkpoint_path(
    torch: Any, urls: Mapping[str, str], model: str, checkpoint: Path | None
) -> Path:
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise NotConfigured(f"detoxify checkpoint {checkpoint} does not exist or is not a file")
        return checkpoint
    url = urls.get(model)
    if url is None:
        raise NotConfigured(
            f"no detoxify_checkpoint set and {model!r} is not a Detoxify model "
            f"(known: {', '.join(sorted(urls))})"
        )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not cached.is_file():
        raise NotConfigured(
            f"no detoxify_checkpoint set and the {model!r} weights are not in the torch hub "
            f"cache ({cached}); Vigil never downloads at run time: fetch {url} on a connected "
            "machine, run `vigil models prepare` on it and set detoxify_checkpoint"
        )
    return cached


def _config_dir(config_dir: Path | None) -> Path:
    if config_dir is None:
        raise NotConfigured(
            "detoxify_config_dir is not set: the local Hugging Face config and tokenizer "
            "directory the checkpoint was prepared with (`vigil models prepare`)"
        )
    if not config_dir.is_dir():
        raise NotConfigured(f"detoxify config dir {config_dir} does not exist")
    return config_dir


def _check_prepared(path: Path, args: Mapping[str, Any], config_dir: Path) -> None:
    model_type = Path(str(args["model_type"]))
    if not (model_type / "config.json").is_file():
        raise NotConfigured(
            f"{path} is not prepared for offline use: its model_type {str(model_type)!r} is not "
            "a local directory with config.json, so Detoxify would ask the Hugging Face hub; run "
            f"`vigil models prepare --checkpoint {path} --config-dir {config_dir} --out NEW` "
            "and set detoxify_checkpoint to NEW"
        )
    problem = config_dir_problem(config_dir, int(args["num_classes"]))
    if problem:
        raise NotConfigured(problem)


def _build(
    loader: Any, path: Path, args: Mapping[str, Any], state: Any, folder: Path
) -> tuple[Any, Any]:
    """Detoxify's own model/tokenizer loader, pointed at the local directory."""
    try:
        model, tokenizer = loader.get_model_and_tokenizer(
            **args, state_dict=state, huggingface_config_path=str(folder)
        )
    except (OSError, ValueError, AttributeError, RuntimeError, KeyError) as err:
        raise NotConfigured(f"{path}: Detoxify could not load it from {folder}: {err}") from None
    model.eval()
    return model, tokenizer
