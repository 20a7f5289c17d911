"""The model card: seed 002's template filled with recorded values only (no torch).

Values come from three places: ``CardFacts`` (what the registry knows: owner, intended use,
limitations...), the artifact's manifest (model type, data, preprocessing, hyperparameters) and
the validation report (metrics and gates). A field none of them records is written
``not recorded``: nothing is invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class CardFacts:
    """What the registry knows about the model; None means not recorded."""

    name: str
    version: str | None = None
    developer: str | None = None
    owner: str | None = None
    license: str | None = None
    description: str | None = None
    intended_use: str | None = None
    out_of_scope: str | None = None
    users: str | None = None
    dataset_name: str | None = None
    limitations: str | None = None
    bias_evaluation: str | None = None
    fairness_testing: str | None = None
    privacy: str | None = None
    update_frequency: str | None = None
    feedback: str | None = None


def _v(value: Any) -> str:
    """A value on one line, or ``not recorded``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return NOT_RECORDED
    return " ".join(str(value).split())


def _cell(value: Any) -> str:
    return _v(value).replace("|", "\\|")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _v(value)


def _model_type(manifest: dict[str, Any] | None) -> str:
    if not manifest:
        return NOT_RECORDED
    arch = manifest.get("architecture", {})
    classes = manifest.get("classes") or []
    return (
        f"Classification ({len(classes)} classes; {_v(arch.get('type'))}: "
        f"{_v(arch.get('inputs'))} inputs, {_v(arch.get('hidden_units'))} hidden units)"
    )


def _data_lines(facts: CardFacts, manifest: dict[str, Any] | None) -> list[str]:
    dataset = (manifest or {}).get("dataset", {})
    rows = dataset.get("rows") or {}
    features = (manifest or {}).get("input_schema", {}).get("features")
    source = dataset.get("source")
    if source and dataset.get("sha256"):
        source = f"{source} (sha256 {dataset['sha256']})"
    size = NOT_RECORDED
    if rows and features is not None:
        size = f"{rows.get('train')} training rows, {rows.get('holdout')} holdout rows, {len(features)} features"
    prep = NOT_RECORDED
    if manifest and "preprocessing" in manifest:
        prep = (
            f"stratified train/holdout split (seed {_v(dataset.get('split_seed'))}); "
            "standardisation with the training split's mean and standard deviation, "
            "applied inside the model's forward pass"
        )
    name = f"{facts.dataset_name}: " if facts.dataset_name else ""
    return [f"- Sources: {name}{_v(source)}", f"- Size: {size}", f"- Preprocessing: {prep}"]


def _metrics(manifest: dict[str, Any] | None, report: dict[str, Any] | None) -> str:
    metrics = dict((report or {}).get("metrics") or {})
    if not metrics and manifest and manifest.get("metrics"):
        metrics = {"holdout accuracy": manifest["metrics"].get("holdout_accuracy")}
    if not metrics:
        return NOT_RECORDED
    return "; ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in sorted(metrics.items()))


def _gates_table(report: dict[str, Any] | None) -> list[str]:
    gates = (report or {}).get("gates") or []
    if not gates:
        return ["- Benchmarks: not recorded"]
    lines = [
        "- Benchmarks (quality gates; baseline = the production version):",
        "",
        "| gate | passed | value | threshold | baseline | detail |",
        "|---|---|---|---|---|---|",
    ]
    for g in gates:
        cells = [
            g.get("gate"),
            "yes" if g.get("passed") else "no",
            _fmt(g.get("value")),
            _fmt(g.get("threshold")),
            _fmt(g.get("baseline")),
            g.get("detail"),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return [*lines, ""]


def _limitations(facts: CardFacts, report: dict[str, Any] | None) -> str:
    failed = [g["gate"] for g in (report or {}).get("gates") or [] if not g.get("passed")]
    parts = [facts.limitations] if facts.limitations else []
    if failed:
        parts.append(f"failed quality gates: {', '.join(failed)}")
    return _v("; ".join(parts)) if parts else NOT_RECORDED


def render_card(
    facts: CardFacts,
    manifest: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
) -> str:
    """The model card in markdown, following seed 002's template section by section."""
    hp = (manifest or {}).get("hyperparameters")
    lines = [
        f"# Model Card: {_v(facts.name)}",
        "",
        "## Model Details",
        f"- Developer: {_v(facts.developer)}",
        f"- Model Type: {_model_type(manifest)}",
        f"- Version: {_v(facts.version)}",
        f"- License: {_v(facts.license)}",
        f"- Description: {_v(facts.description)}",
        f"- Hyperparameters: {_v(', '.join(f'{k}={v}' for k, v in sorted(hp.items())) if hp else None)}",
        "",
        "## Intended Use",
        f"- Primary use cases: {_v(facts.intended_use)}",
        f"- Out-of-scope uses: {_v(facts.out_of_scope)}",
        f"- Users: {_v(facts.users)}",
        "",
        "## Training Data",
        *_data_lines(facts, manifest),
        "",
        "## Evaluation",
        f"- Metrics: {_metrics(manifest, report)}",
        *_gates_table(report),
        f"- Limitations: {_limitations(facts, report)}",
        "",
        "## Ethical Considerations",
        f"- Bias evaluation: {_v(facts.bias_evaluation)}",
        f"- Fairness testing: {_v(facts.fairness_testing)}",
        f"- Privacy considerations: {_v(facts.privacy)}",
        "",
        "## Maintenance",
        f"- Owner: {_v(facts.owner)}",
        f"- Update frequency: {_v(facts.update_frequency)}",
        f"- Feedback: {_v(facts.feedback)}",
        "",
    ]
    return "\n".join(lines)
