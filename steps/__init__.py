"""The training saga's step executors: data preparation, training, validation and registration,
and the compensation of each. A step worker (workers.training_steps) calls `execute` with one
step command; torch runs only in the child processes that ml.child starts."""
