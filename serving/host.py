"""What a replica serves, and how it changes (no torch at import; no Ray, no Kafka).

``ModelHost.apply(config)`` takes the deployment's ``user_config``::

    {"models": {"<model>": {"production": <version spec> | null,
                            "canary": <version spec> | null,
                            "canary_share": 0.05}},
     "trusted_key_ids": ["<16 hex>", ...] | null}

(a version spec is ``serving.loader.VersionSpec``'s fields). Every slot whose spec changed is
loaded, verified and warmed beside what is serving, then the whole ``Snapshot`` is replaced by one
reference assignment: a batch that began on the old snapshot finishes on it. A slot whose new
version is refused keeps its previous version; each refusal and each version put into service is
a report (``reports(since=seq)``, and ``on_report`` for a sink such as a Kafka topic).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from serving import metrics
from serving.batching import Predictor, ServedModel, Snapshot
from serving.loader import LoadedVersion, LoadRefused, VersionSpec, check_approval, load_verified
from serving.protocol import share_threshold

DEFAULT_CANARY_SHARE = 0.05
SLOTS = ("production", "canary")
Factory = Callable[[LoadedVersion], Predictor]
Report = dict[str, Any]


@dataclass(frozen=True)
class ModelTarget:
    production: VersionSpec | None
    canary: VersionSpec | None
    canary_threshold: int
    canary_faults: Mapping[str, Any] | None = None


def parse_config(config: Mapping[str, Any]) -> tuple[dict[str, ModelTarget], set[str] | None]:
    """The targets per model and the trusted key ids; ``ValueError`` for a malformed config."""
    if not isinstance(config, Mapping):
        raise ValueError("user_config must be an object")
    models = config.get("models", {})
    if not isinstance(models, Mapping):
        raise ValueError("models must be an object of model name to its versions")
    targets: dict[str, ModelTarget] = {}
    for name, raw in models.items():
        if not isinstance(raw, Mapping):
            raise ValueError(f"model {name!r}: expected an object")
        specs = {
            slot: VersionSpec.from_dict(str(name), raw[slot]) if raw.get(slot) else None
            for slot in SLOTS
        }
        share = raw.get("canary_share", DEFAULT_CANARY_SHARE)
        faults = raw.get("canary_faults")
        if faults is not None and not isinstance(faults, Mapping):
            raise ValueError(f"model {name!r}: canary_faults must be an object")
        targets[str(name)] = ModelTarget(
            specs["production"], specs["canary"], share_threshold(share), faults
        )
    trusted = config.get("trusted_key_ids")
    if trusted is not None and (isinstance(trusted, str) or not isinstance(trusted, list)):
        raise ValueError("trusted_key_ids must be a list of key ids or null")
    return targets, None if trusted is None else {str(k) for k in trusted}


def _torch_factory(device: str, warm_rows: int) -> Factory:
    def build(loaded: LoadedVersion) -> Predictor:
        from serving.runtime import TorchVersion

        return TorchVersion(loaded, device=device, warm_rows=warm_rows)

    return build


class ModelHost:
    """The current ``Snapshot`` (read it once per batch) and the loading of new ones."""

    def __init__(
        self,
        device: str = "cpu",
        warm_rows: int = 512,
        factory: Factory | None = None,
        on_report: Callable[[Report], None] | None = None,
        origin: str = "",
        max_reports: int = 1000,
    ) -> None:
        self.snapshot = Snapshot()
        self._factory = factory or _torch_factory(device, warm_rows)
        self._on_report = on_report
        self._origin = origin
        self._apply_lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._reports: deque[Report] = deque(maxlen=max_reports)
        self._seq = 0

    def apply(self, config: Mapping[str, Any]) -> list[Report]:
        """Load what ``config`` names and swap it in; this call's reports (refusals included)."""
        with self._apply_lock:
            start = self._seq
            try:
                targets, trusted = parse_config(config)
            except ValueError as exc:
                self._report({"kind": "config_invalid", "detail": str(exc)})
                return self.reports(since=start)
            current = self.snapshot
            loaded_by_key = _loaded_versions(current)
            models: dict[str, ServedModel] = {}
            swaps: list[Report] = []
            for name, target in targets.items():
                old = current.models.get(name)
                slots: dict[str, Predictor | None] = {}
                for slot in SLOTS:
                    spec: VersionSpec | None = getattr(target, slot)
                    previous = getattr(old, slot) if old is not None else None
                    chosen = self._slot(name, slot, spec, previous, loaded_by_key, trusted)
                    slots[slot] = chosen
                    if chosen is not previous:
                        swaps.append(_swap(name, slot, chosen, previous))
                models[name] = ServedModel(
                    name,
                    slots["production"],
                    slots["canary"],
                    target.canary_threshold,
                    target.canary_faults,
                )
            self.snapshot = Snapshot(MappingProxyType(models), current.generation + 1)
            for name in set(current.models) - set(models):
                old = current.models[name]
                for slot in SLOTS:
                    if getattr(old, slot) is not None:
                        swaps.append(_swap(name, slot, None, getattr(old, slot)))
            for report in swaps:
                metrics.SWAPS.labels(report["model_name"], report["slot"]).inc()
                self._report(report)
            return self.reports(since=start)

    def _slot(
        self,
        name: str,
        slot: str,
        spec: VersionSpec | None,
        previous: Predictor | None,
        loaded_by_key: dict[tuple[str, str, str], Predictor],
        trusted: set[str] | None,
    ) -> Predictor | None:
        if spec is None:
            return None
        if previous is not None and _spec_of(previous) == spec:
            return previous
        try:
            reuse = loaded_by_key.get(_key(spec))
            if reuse is not None:  # the same verified bytes in another slot (a promoted canary)
                check_approval(spec)
                if trusted is not None and _key_id(reuse) not in trusted:
                    raise LoadRefused("bad_signature", "the signing key is no longer trusted")
                return reuse
            return self._factory(load_verified(spec, trusted))
        except LoadRefused as exc:
            metrics.REFUSALS.labels(name, exc.reason).inc()
            self._report(
                {
                    "kind": "load_refused",
                    "model_name": name,
                    "slot": slot,
                    "version": spec.version,
                    "sha256": spec.sha256,
                    "reason": exc.reason,
                    "detail": exc.detail,
                    "still_serving": previous.version if previous is not None else None,
                }
            )
            return previous

    def _report(self, report: Report) -> None:
        with self._report_lock:
            self._seq += 1
            report = {"seq": self._seq, "at": time.time(), "origin": self._origin, **report}
            self._reports.append(report)
        if self._on_report is not None:
            # A sink's failure must not stop a swap; the report is kept here either way.
            with contextlib.suppress(Exception):
                self._on_report(report)

    def reports(self, since: int = 0) -> list[Report]:
        """Reports with ``seq`` above ``since`` (the last ``max_reports`` are kept)."""
        with self._report_lock:
            return [r for r in self._reports if r["seq"] > since]

    def refusals(self, since: int = 0) -> list[Report]:
        return [r for r in self.reports(since) if r["kind"] in ("load_refused", "config_invalid")]


def _spec_of(predictor: Predictor) -> VersionSpec | None:
    loaded = getattr(predictor, "loaded", None)
    return loaded.spec if isinstance(loaded, LoadedVersion) else None


def _key_id(predictor: Predictor) -> str | None:
    loaded = getattr(predictor, "loaded", None)
    return loaded.key_id if isinstance(loaded, LoadedVersion) else None


def _key(spec: VersionSpec) -> tuple[str, str, str]:
    return (spec.version, spec.sha256, spec.signature)


def _loaded_versions(snapshot: Snapshot) -> dict[tuple[str, str, str], Predictor]:
    out: dict[tuple[str, str, str], Predictor] = {}
    for served in snapshot.models.values():
        for p in (served.production, served.canary):
            spec = _spec_of(p) if p is not None else None
            if p is not None and spec is not None:
                out[_key(spec)] = p
    return out


def _swap(name: str, slot: str, chosen: Predictor | None, previous: Predictor | None) -> Report:
    return {
        "kind": "serving",
        "model_name": name,
        "slot": slot,
        "version": chosen.version if chosen is not None else None,
        "previous_version": previous.version if previous is not None else None,
    }
