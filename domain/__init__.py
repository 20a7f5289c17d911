"""The domain: aggregates (registered models, versions, datasets, submissions, training runs) whose
`check_*` invariants raise typed errors, and the RBAC table of who may do what. Imports no adapter."""
