"""The Detoxify detector, offline: a tiny random BERT in Detoxify's checkpoint format.

The model is built once per module (2 layers, hidden 32, a 40-word vocabulary), prepared with
``vigil models prepare`` and loaded through the real Detoxify and transformers code with the
network switched off (hub offline variables set and ``socket.connect`` refused).
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from classifiers import ClassifierOptions, build_classifier
from classifiers.base import Input, NotConfigured, Roster, Signal
from classifiers.taxonomy import Cell, Flag, Severity, Tag
from classifiers.toxicity import DEFAULT_THRESHOLDS, DetoxifyDetector, signals_for
from monitor.cli import main

JIGSAW = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
LABELS = ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack")
_VOCABULARY = """
you are a an the i we they he she is not will kill hate love school idiot stupid great good bad
teacher class today trip lovely thanks all your ur so dead going to
"""
WORDS = _VOCABULARY.split()
TEXTS = [
    "you are an idiot",
    "we love the school trip",
    "i will kill you",
    "",
    "thanks to all the teacher class today so good",
]
ALL = dict.fromkeys(LABELS, 0.0)
NEVER = dict.fromkeys(LABELS, 1.01)


@dataclass(frozen=True, kw_only=True)
class TinyModel:
    """A tiny Detoxify-format model: the raw checkpoint, its local config dir, the prepared one."""

    config_dir: Path
    raw: Path
    prepared: Path


def build_tiny_model(root: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny random BERT as a local HF dir and a raw (hub-named) Detoxify checkpoint."""
    import torch

    hf: Any = pytest.importorskip("transformers")  # as Any: its stubs vary between versions

    config_dir = root / "tiny-bert"
    config_dir.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (config_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer_config = {"do_lower_case": True, "model_max_length": 64}
    (config_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    hf.BertTokenizerFast.from_pretrained(str(config_dir)).save_pretrained(str(config_dir))
    config = hf.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=len(JIGSAW),
        initializer_range=0.5,  # wide weights: different texts get clearly different scores
    )
    torch.manual_seed(seed)
    model = hf.BertForSequenceClassification(config)
    config.save_pretrained(str(config_dir))
    raw = root / "toxic_tiny.ckpt"
    torch.save(_checkpoint(model.state_dict(), "bert-base-uncased"), str(raw))
    return config_dir, raw


def _checkpoint(state_dict: Any, model_type: str) -> dict[str, Any]:
    return {
        "config": {
            "dataset": {"args": {"classes": list(JIGSAW)}},
            "arch": {
                "args": {
                    "model_type": model_type,
                    "model_name": "BertForSequenceClassification",
                    "tokenizer_name": "BertTokenizer",
                    "num_classes": len(JIGSAW),
                }
            },
        },
        "state_dict": state_dict,
    }


def _refuse_network(*args: object, **kwargs: object) -> None:
    raise OSError("network access attempted in an offline test")


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """No network for anything in this module: hub offline variables and no socket connects."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("detoxify")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", _refuse_network)
        yield


@pytest.fixture(scope="module")
def tiny(offline: None, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    root = tmp_path_factory.mktemp("detoxify")
    config_dir, raw = build_tiny_model(root)
    prepared = root / "toxic_tiny.prepared.ckpt"
    result = _prepare(raw, config_dir, prepared)
    assert result.exit_code == 0, result.output
    return TinyModel(config_dir=config_dir, raw=raw, prepared=prepared)


@pytest.fixture(scope="module")
def detector(tiny: TinyModel) -> DetoxifyDetector:
    return DetoxifyDetector(checkpoint=tiny.prepared, config_dir=tiny.config_dir, thresholds=ALL)


def _prepare(checkpoint: Path, config_dir: Path, out: Path) -> Any:
    args = ["models", "prepare", "--checkpoint", str(checkpoint), "--config-dir", str(config_dir)]
    return CliRunner().invoke(main, [*args, "--out", str(out)])


def _flagged(signals: list[Signal]) -> dict[str, Signal]:
    return {s.rule: s for s in signals if s.flag is not None}


# -- the label → taxonomy mapping (pure) ------------------------------------------------


@pytest.mark.parametrize(
    ("label", "score", "cell", "severity", "tags"),
    [
        ("toxicity", 0.85, "conduct.aggressive", Severity.LOW, set()),
        ("toxicity", 0.95, "conduct.aggressive", Severity.MEDIUM, set()),
        ("insult", 0.9, "conduct.aggressive", Severity.MEDIUM, set()),  # halfway to 1
        ("obscene", 0.91, "conduct.aggressive", Severity.LOW, set()),
        ("severe_toxicity", 0.5, "conduct.aggressive", Severity.HIGH, set()),
        ("threat", 0.6, "content.aggressive", Severity.HIGH, {Tag.THREAT}),
        ("identity_attack", 0.7, "content.values", Severity.HIGH, {Tag.HATE}),
        ("sexual_explicit", 0.99, "content.sexual", Severity.MEDIUM, set()),
    ],
)
def test_a_label_over_its_threshold_maps_to_flag_cell_and_severity(
    label: str, score: float, cell: str, severity: Severity, tags: set[Tag]
) -> None:
    text = "some text"
    signals = signals_for(text, {label: score}, DEFAULT_THRESHOLDS)
    raw, flagged = signals
    assert (raw.flag, raw.rule, raw.score) == (None, f"detoxify.{label}", score)
    assert flagged.flag is Flag.ABUSIVE
    assert flagged.cell == Cell.parse(cell)
    assert flagged.severity is severity
    assert flagged.tags == frozenset(tags)
    assert flagged.span == (0, len(text)) and flagged.text == text
    assert flagged.score == score and flagged.detector == "detoxify"


def test_below_threshold_and_unknown_labels_only_carry_scores() -> None:
    signals = signals_for("hi", {"toxicity": 0.79, "male": 0.9}, DEFAULT_THRESHOLDS)
    assert [(s.rule, s.flag) for s in signals] == [("detoxify.toxicity", None)]


def test_thresholds_are_checked_before_anything_heavy_loads() -> None:
    with pytest.raises(NotConfigured, match=r"unknown labels \['toxic'\]"):
        DetoxifyDetector(thresholds={"toxic": 0.5})
    with pytest.raises(NotConfigured, match=r"detoxify_thresholds.threat: must be a number"):
        DetoxifyDetector(thresholds={"threat": -0.1})


# -- refusing to run (NotConfigured with the reason) -------------------------------------


def test_missing_extra_is_not_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "detoxify", None)
    monkeypatch.setitem(sys.modules, "detoxify.detoxify", None)
    with pytest.raises(NotConfigured, match=r"Detoxify extra is not installed.*torch==2\.13\.0"):
        DetoxifyDetector(checkpoint=tmp_path / "x.ckpt", config_dir=tmp_path)


def test_a_bare_model_name_is_refused_unless_cached(
    offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cached = tmp_path / "hub" / "checkpoints" / "original-albert-0e1d6498.ckpt"
    with pytest.raises(NotConfigured, match="never downloads") as err:
        DetoxifyDetector(model="original-small", config_dir=tmp_path)
    assert str(cached) in str(err.value)
    with pytest.raises(NotConfigured, match="not a Detoxify model"):
        DetoxifyDetector(model="bert-base-uncased", config_dir=tmp_path)


def test_a_cached_hub_checkpoint_still_needs_preparing(
    tiny: TinyModel, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    cached = tmp_path / "checkpoints" / "toxic_original-c1212f89.ckpt"
    cached.write_bytes(tiny.raw.read_bytes())
    with pytest.raises(NotConfigured, match=r"not prepared for offline use.*vigil models prepare"):
        DetoxifyDetector(model="original", config_dir=tiny.config_dir)


def test_missing_files_are_not_configured(tiny: TinyModel, tmp_path: Path) -> None:
    with pytest.raises(NotConfigured, match="does not exist or is not a file"):
        DetoxifyDetector(checkpoint=tmp_path / "gone.ckpt", config_dir=tiny.config_dir)
    with pytest.raises(NotConfigured, match="detoxify_config_dir is not set"):
        DetoxifyDetector(checkpoint=tiny.prepared)
    with pytest.raises(NotConfigured, match=r"config dir .* does not exist"):
        DetoxifyDetector(checkpoint=tiny.prepared, config_dir=tmp_path / "gone")
    with pytest.raises(NotConfigured, match=r"has no config\.json"):
        DetoxifyDetector(checkpoint=tiny.prepared, config_dir=tmp_path)


def test_an_unprepared_checkpoint_is_refused_with_the_fix(tiny: TinyModel) -> None:
    with pytest.raises(NotConfigured, match="'bert-base-uncased' is not a local directory") as err:
        DetoxifyDetector(checkpoint=tiny.raw, config_dir=tiny.config_dir)
    assert f"vigil models prepare --checkpoint {tiny.raw}" in str(err.value)


def test_a_file_that_is_not_a_checkpoint_is_refused(tiny: TinyModel, tmp_path: Path) -> None:
    import torch

    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, str(other))
    with pytest.raises(NotConfigured, match="not a Detoxify checkpoint"):
        DetoxifyDetector(checkpoint=other, config_dir=tiny.config_dir)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(NotConfigured, match="cannot read the checkpoint"):
        DetoxifyDetector(checkpoint=garbage, config_dir=tiny.config_dir)


# -- vigil models prepare ---------------------------------------------------------------


def test_prepare_points_model_type_at_the_local_directory(tiny: TinyModel) -> None:
    import torch

    saved = torch.load(str(tiny.prepared), weights_only=False)
    args = saved["config"]["arch"]["args"]
    assert args["model_type"] == str(tiny.config_dir.resolve())
    assert args["tokenizer_name"] == "BertTokenizer"
    assert saved["config"]["vigil"]["hub_model_type"] == "bert-base-uncased"
    assert set(saved) == {"config", "state_dict"}


def test_prepare_never_overwrites(tiny: TinyModel) -> None:
    result = _prepare(tiny.raw, tiny.config_dir, tiny.prepared)
    assert result.exit_code == 2
    assert "already exists" in result.output


def test_prepare_checks_the_label_count(tiny: TinyModel, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-labels"
    wrong.mkdir()
    for item in tiny.config_dir.iterdir():
        (wrong / item.name).write_bytes(item.read_bytes())
    config = json.loads((wrong / "config.json").read_text())
    for key in ("id2label", "label2id"):
        config.pop(key, None)
    (wrong / "config.json").write_text(json.dumps(config))  # the default: 2 labels
    result = _prepare(tiny.raw, wrong, tmp_path / "out.ckpt")
    assert result.exit_code == 2
    assert 'has 2 labels but the checkpoint has 6: set "num_labels": 6' in result.output
    assert not (tmp_path / "out.ckpt").exists()


def test_prepare_help_warns_that_checkpoints_are_pickles() -> None:
    result = CliRunner().invoke(main, ["models", "prepare", "--help"])
    assert result.exit_code == 0
    assert "pickle" in result.output


# -- scoring ----------------------------------------------------------------------------


def test_batch_scores_match_detoxify_itself(tiny: TinyModel, detector: DetoxifyDetector) -> None:
    from detoxify import Detoxify

    texts = [t for t in TEXTS if t]
    reference = Detoxify(
        checkpoint=str(tiny.prepared), huggingface_config_path=str(tiny.config_dir)
    )
    expected = reference.predict(texts)
    got = detector.scores(texts)
    assert detector.labels == LABELS
    for i, scores in enumerate(got):
        assert scores == pytest.approx({label: expected[label][i] for label in LABELS}, abs=1e-5)
    assert len({round(s["toxicity"], 4) for s in got}) > 1  # texts are told apart


def test_detect_many_batches_and_keeps_order(
    detector: DetoxifyDetector, tiny: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = DetoxifyDetector(
        checkpoint=tiny.prepared, config_dir=tiny.config_dir, batch_size=2, thresholds=ALL
    )
    calls: list[int] = []
    scores = small.scores

    def counted(texts: list[str]) -> list[dict[str, float]]:
        calls.append(len(texts))
        return scores(texts)

    monkeypatch.setattr(small, "scores", counted)
    items = [Input(text=t) for t in TEXTS]
    many = small.detect_many(items)
    assert calls == [2, 2]  # four non-empty texts, two per batch; the empty one is skipped
    assert many[3] == []
    for item, signals in zip(items, many, strict=True):
        one = detector.detect(item)
        assert [(s.rule, s.flag, s.span) for s in signals] == [
            (s.rule, s.flag, s.span) for s in one
        ]
        assert [s.score for s in signals] == pytest.approx([s.score for s in one], abs=1e-5)


def test_thresholds_decide_the_flags(detector: DetoxifyDetector, tiny: TinyModel) -> None:
    text = "i will kill you"
    everything = _flagged(detector.detect(Input(text=text)))
    assert set(everything) == {f"detoxify.{label}" for label in LABELS}
    assert everything["detoxify.threat"].tags == {Tag.THREAT}
    assert everything["detoxify.threat"].severity is Severity.HIGH
    assert everything["detoxify.identity_attack"].cell == Cell.parse("content.values")
    assert all(s.span == (0, len(text)) for s in everything.values())
    never = DetoxifyDetector(checkpoint=tiny.prepared, config_dir=tiny.config_dir, thresholds=NEVER)
    signals = never.detect(Input(text=text))
    assert _flagged(signals) == {}
    assert len(signals) == len(LABELS)  # the scores still travel


# -- in the classifier ------------------------------------------------------------------


def _options(tiny: TinyModel | None, thresholds: dict[str, float]) -> ClassifierOptions:
    return ClassifierOptions(
        enabled_detectors=("rules", "detoxify"),
        detoxify_checkpoint=tiny.prepared if tiny else None,
        detoxify_config_dir=tiny.config_dir if tiny else None,
        detoxify_thresholds=tuple(thresholds.items()),
    )


def test_the_classifier_batches_detoxify_and_reports_its_scores(tiny: TinyModel) -> None:
    classifier = build_classifier(Roster(), _options(tiny, ALL))
    assert classifier.enabled == ("rules", "detoxify")
    assert classifier.skipped == ()
    items = [Input(text=t) for t in TEXTS]
    verdicts = classifier.classify_many(items)
    assert verdicts[1].flags == {Flag.ABUSIVE}  # every label at threshold 0 fires
    assert {f"detoxify.{label}" for label in LABELS} <= set(verdicts[1].scores)
    assert verdicts[3].scores == {} and not verdicts[3].flagged  # empty text: not scored
    single = classifier.classify(items[0])
    assert single.flags == verdicts[0].flags
    assert single.scores == pytest.approx(verdicts[0].scores, abs=1e-5)


def test_the_classifier_skips_an_unconfigured_detoxify_and_the_rules_carry_on() -> None:
    classifier = build_classifier(Roster(), _options(None, {}))
    assert classifier.enabled == ("rules",)
    [(name, reason)] = classifier.skipped
    assert name == "detoxify"
    assert "never downloads" in reason or "not installed" in reason
    verdict = classifier.classify_many([Input(text="you are an idiot")])[0]
    assert Flag.ABUSIVE in verdict.flags
    assert not any(key.startswith("detoxify.") for key in verdict.scores)


def test_the_config_reaches_the_detector(tiny: TinyModel, make_settings: Any) -> None:
    from monitor.app import build_classifier_for
    from monitor.config import ConfigError

    section = {
        "detectors": ["rules", "detoxify"],
        "detoxify_checkpoint": str(tiny.prepared),
        "detoxify_config_dir": str(tiny.config_dir),
        "detoxify_batch_size": 4,
        "detoxify_thresholds": {"toxicity": 0.0},
    }
    classifier = build_classifier_for(make_settings(classifier=section))
    assert classifier.enabled == ("rules", "detoxify")
    verdict = classifier.classify_many([Input(text="we love the school trip")])[0]
    assert [s.rule for s in verdict.reasons] == ["detoxify.toxicity"]  # only it is at 0.0
    raw = make_settings(classifier={**section, "detoxify_checkpoint": str(tiny.raw)})
    with pytest.raises(ConfigError) as err:
        build_classifier_for(raw)
    [problem] = err.value.problems
    assert "classifier.detoxify: " in problem and "not prepared for offline use" in problem
