"""``vigil models prepare``: make a Detoxify checkpoint load offline from a local directory.

Detoxify builds its model with ``from_pretrained(checkpoint["config"]["arch"]["args"]
["model_type"])`` even when it is given a local config directory, and that field holds a hub
name ("bert-base-uncased"), so loading would ask the Hugging Face hub. ``prepare_checkpoint``
re-saves the checkpoint with ``model_type`` pointing at the local directory (and a tokenizer
class this transformers has), keeping only what Detoxify reads (``config`` and
``state_dict``), then loads the result once through the detector to prove it works offline.

Checkpoints are pickles: unpickling runs whatever code the file holds. Prepare only files the
administrator names and trusts (e.g. downloaded from Detoxify's GitHub releases by hand).
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifiers.base import NotConfigured
from classifiers.toxicity import DetoxifyDetector, arch_args, config_dir_problem, load_checkpoint

__all__ = ["PrepareError", "Prepared", "prepare_checkpoint"]


class PrepareError(Exception):
    """The checkpoint or the config directory cannot be prepared; the message says why."""


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """What ``prepare_checkpoint`` wrote."""

    out: Path
    labels: tuple[str, ...]  # as Detoxify names them (toxic → toxicity, ...)
    hub_model_type: str  # what model_type said before
    config_dir: Path
    load_seconds: float  # loading the prepared file through the detector

    def summary(self) -> str:
        """One line for the command line."""
        return (
            f"wrote {self.out}: model_type {self.hub_model_type!r} → {self.config_dir}; "
            f"labels {', '.join(self.labels)}; loads offline in {self.load_seconds:.1f} s. "
            f"Set classifier.detoxify_checkpoint = {str(self.out)!r} and "
            f"classifier.detoxify_config_dir = {str(self.config_dir)!r}"
        )


def prepare_checkpoint(checkpoint: Path, config_dir: Path, out: Path) -> Prepared:
    """Re-save ``checkpoint`` as ``out`` pointing at ``config_dir``; never overwrites ``out``."""
    if out.exists():
        raise PrepareError(f"{out} already exists; choose another --out (never overwritten)")
    torch, transformers = _import_extra()
    folder = config_dir.resolve()
    try:
        loaded = load_checkpoint(torch, checkpoint)
        args, _classes = arch_args(checkpoint, loaded)
    except NotConfigured as err:
        raise PrepareError(str(err)) from None
    problem = config_dir_problem(folder, int(args["num_classes"]))
    if problem:
        raise PrepareError(problem)
    new_args = _offline_args(transformers, args, folder)
    config = {**loaded["config"], "arch": {**loaded["config"]["arch"], "args": new_args}}
    config["vigil"] = {"prepared_from": checkpoint.name, "hub_model_type": str(args["model_type"])}
    _save(torch, {"config": config, "state_dict": loaded["state_dict"]}, out)
    seconds, labels = _verify(out, folder)
    return Prepared(
        out=out,
        labels=labels,
        hub_model_type=str(args["model_type"]),
        config_dir=folder,
        load_seconds=seconds,
    )


def _import_extra() -> tuple[Any, Any]:
    try:
        return importlib.import_module("torch"), importlib.import_module("transformers")
    except ImportError as err:
        raise PrepareError(
            f"the Detoxify extra is not installed ({err.name} missing): install "
            "torch==2.13.0 (the CPU build) first, then 'vigil[detoxify]'"
        ) from None


def _offline_args(transformers: Any, args: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``arch.args`` with model_type at the local directory and classes this version has."""
    model_name = str(args["model_name"])
    if not hasattr(transformers, model_name):
        raise PrepareError(f"this transformers has no model class {model_name!r}")
    tokenizer = str(args["tokenizer_name"])
    if not hasattr(transformers, tokenizer) and hasattr(transformers, f"{tokenizer}Fast"):
        tokenizer = f"{tokenizer}Fast"
    if not hasattr(transformers, tokenizer):
        raise PrepareError(f"this transformers has no tokenizer class {tokenizer!r}")
    return {**args, "model_type": str(folder), "tokenizer_name": tokenizer}


def _save(torch: Any, checkpoint: dict[str, Any], out: Path) -> None:
    partial = out.with_name(f".{out.name}.partial")
    try:
        torch.save(checkpoint, str(partial))
        os.replace(partial, out)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise PrepareError(f"{out}: cannot write: {err}") from None


def _verify(out: Path, folder: Path) -> tuple[float, tuple[str, ...]]:
    """Load the prepared file as the daemon will; remove it again if that fails."""
    started = time.monotonic()
    try:
        detector = DetoxifyDetector(checkpoint=out, config_dir=folder)
    except NotConfigured as err:
        out.unlink(missing_ok=True)
        raise PrepareError(
            f"the prepared checkpoint does not load, so it was removed: {err}"
        ) from None
    return time.monotonic() - started, detector.labels
