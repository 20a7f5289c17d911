"""The API samples the stack's health in the background (infra.health) and /ready answers from
the latest sample; a stale one (the sampler stuck) is replaced on demand."""

from __future__ import annotations

import asyncio
import time

from infra import health
from infra.context import Infra
from projections.apply import load_positions
from projections.quarantine_queries import counts_by_reason


class HealthCache:
    def __init__(self, c: Infra) -> None:
        self.c = c
        self.at = 0.0
        self.components: list[health.Component] = []

    def _sample(self) -> list[health.Component]:
        try:
            return health.sample(self.c.settings, load_positions, counts_by_reason)
        except Exception as exc:  # a probe that fails is itself a finding, never a 500
            return [health.Component("health-probe", "down", f"{type(exc).__name__}: {exc}")]

    async def refresh(self) -> list[health.Component]:
        self.components = await asyncio.to_thread(self._sample)
        self.at = time.monotonic()
        return self.components

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.c.settings.health_sample_s)

    async def current(self) -> list[health.Component]:
        if time.monotonic() - self.at > 3 * self.c.settings.health_sample_s:
            return await self.refresh()
        return self.components
