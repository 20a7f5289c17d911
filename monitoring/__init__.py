"""The drift monitor's pure logic (no Kafka, no I/O): joining served requests to their results,
windows per (model, version) with contiguous ids, in-order acknowledgement, accuracy windows."""
