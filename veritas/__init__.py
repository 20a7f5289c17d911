"""The composition root (`bootstrap()`), the `veritas` CLI, the demo and the local stack's
lifecycle (`up`, `down`, `status`)."""
