"""Serving on Ray Serve: the runtime core (no imports from the rest of Veritas; ``ml`` only).

Importing this package imports neither torch nor Ray. Modules:

* ``loader``: the loading rule (sha256, Ed25519 signature, approval) before any deserialisation.
* ``protocol`` / ``batching``: request and result messages, canary routing, a batch's answers.
* ``host``: what a replica serves (a ``Snapshot``), and how a ``user_config`` swaps it.
* ``runtime``: a verified version as a torch model (imports torch; replicas only).
* ``kafka_ingress`` / ``commit``: the consume -> answer -> produce -> commit loop (a Kafka
  transaction per group of batches: results + consumed offsets) and its helper-thread committer.
* ``metrics``: prometheus-client metrics of a replica.
* ``app``: the Ray Serve deployment (``ModelServer``) and its application builder.
* ``control``: the driver side: start Ray, deploy declaratively, change what is served.
"""
