"""ml.card and ml.environment: recorded values only, "not recorded" for the rest."""

from __future__ import annotations

from pathlib import Path

from ml.card import NOT_RECORDED, CardFacts, render_card
from ml.environment import code_revision, environment, framework_versions

MANIFEST = {
    "classes": ["0", "1", "2"],
    "architecture": {"type": "mlp-relu-v1", "inputs": 4, "hidden_units": 64},
    "input_schema": {"features": [{"name": f"f{i}", "dtype": "float64"} for i in range(4)]},
    "hyperparameters": {"epochs": 20, "learning_rate": 0.001},
    "preprocessing": {"standardisation": {"mean": [0.0] * 4, "std": [1.0] * 4}},
    "dataset": {"sha256": "ab" * 32, "source": "sklearn:iris", "split_seed": 7,
                "rows": {"train": 120, "holdout": 30}},
    "metrics": {"holdout_accuracy": 0.97},
}  # fmt: skip
REPORT = {
    "passed": False,
    "metrics": {"accuracy": 0.9667, "latency_p95_ms": 0.11, "peak_memory_bytes": 28000, "size_bytes": 20184},
    "gates": [
        {"gate": "accuracy_min", "passed": True, "value": 0.9667, "threshold": 0.9, "baseline": None,
         "detail": "holdout accuracy | minimum"},
        {"gate": "latency_p95", "passed": False, "value": 0.2, "threshold": 0.12, "baseline": 0.11,
         "detail": "<= 1.1 x production's"},
    ],
}  # fmt: skip


def test_the_card_follows_the_template_with_real_values() -> None:
    facts = CardFacts(name="iris", version="1.2.0", owner="ml-team", intended_use="demo",
                      limitations="small data")  # fmt: skip
    card = render_card(facts, MANIFEST, REPORT)
    sections = [line for line in card.splitlines() if line.startswith("#")]
    assert sections == ["# Model Card: iris", "## Model Details", "## Intended Use", "## Training Data",
                        "## Evaluation", "## Ethical Considerations", "## Maintenance"]  # fmt: skip
    assert "- Version: 1.2.0" in card and "- Owner: ml-team" in card
    assert "Classification (3 classes; mlp-relu-v1: 4 inputs, 64 hidden units)" in card
    assert "- Size: 120 training rows, 30 holdout rows, 4 features" in card
    assert "sklearn:iris (sha256 " + "ab" * 32 + ")" in card and "seed 7" in card
    assert "accuracy 0.9667" in card and "| latency_p95 | no | 0.2 | 0.12 | 0.11 |" in card
    assert "holdout accuracy \\| minimum" in card  # a pipe cannot break the table
    assert "- Limitations: small data; failed quality gates: latency_p95" in card
    assert "- Developer: not recorded" in card and "- License: not recorded" in card
    assert "- Bias evaluation: not recorded" in card


def test_a_card_without_manifest_or_report_invents_nothing() -> None:
    card = render_card(CardFacts(name="m"))
    lines = [line for line in card.splitlines() if line.startswith("- ")]
    assert lines and all(line.endswith(NOT_RECORDED) for line in lines), lines


def test_environment_and_code_revision(tmp_path: Path) -> None:
    env = environment("cpu")
    assert env["device"] == "cpu" and env["python"] == framework_versions()["python"]
    assert env["frameworks"]["torch"] and env["frameworks"]["numpy"]
    revision = code_revision(Path(__file__).parent)
    assert revision is None or len(revision) == 40
    assert code_revision(tmp_path) is None  # not a git checkout
