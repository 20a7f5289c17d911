"""The Kafka ingress without Ray: the delivery rule when its process is killed mid-stream.

``exactly_once``: a read_committed reader sees exactly one result per request although the first
process was SIGKILLed with a transaction open; its successor (same transactional id) aborts it.
``at_least_once``: nothing is lost; repeats are allowed and carry the same request id.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from config.settings import Settings
from ml import signing
from tests import serving_support as s

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


def _start(servers: str, req: str, res: str, group: str, delivery: str, spec: str) -> subprocess.Popen[bytes]:  # fmt: skip
    args = ["ingress", servers, req, res, group, f"{group}-tx", delivery, spec]
    module = [sys.executable, "-m", "tests.serving_support"]
    proc = subprocess.Popen([*module, *args], cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"started"
    return proc


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_a_killed_ingress_process_loses_nothing(infra: Settings, delivery: str) -> None:
    servers = infra.kafka_bootstrap_servers
    tag = uuid.uuid4().hex[:6]
    req, res, group = f"ing.req.{tag}", f"ing.res.{tag}", f"ing-{tag}"
    s.create_topics(servers, {req: 2, res: 2})
    art = s.cached_artifacts([1, 2, 3])[0]
    spec = json.dumps(s.signed_spec(art, signing.generate_private_key(), "1.0.0"))
    first = _start(servers, req, res, group, delivery, spec)
    try:
        with s.Stream(servers, req, 400, s.holdout_rows(200)) as stream:
            time.sleep(3)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second = _start(servers, req, res, group, delivery, spec)
            time.sleep(4)
        ids = stream.ids()
        reader = s.Results(servers, res)
        missing = reader.until(ids, 120)
        reader.poll(1.0)
        reader.close()
    finally:
        for proc in (first, locals().get("second")):
            if isinstance(proc, subprocess.Popen) and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert not missing, f"{len(missing)} requests without a result"
    counts = Counter(r["request_id"] for r in reader.records if r["request_id"] in ids)
    assert set(counts) == ids
    if delivery == "exactly_once":
        assert max(counts.values()) == 1, counts.most_common(3)
    print(f"{delivery}: {len(ids)} requests, {sum(counts.values()) - len(ids)} repeats")
