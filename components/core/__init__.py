"""What every step shares and nothing else: errors, atomic file writes and hashes, the paths of a task
(layout), MLflow set-up (tracking), the task contract (contract: meta.json as TaskMeta), token constants,
sampling from a next-token distribution (numpy only, shared by evaluation and serving), and glibc's malloc
settings that keep freed tensor memory for reuse (memory).

Imports: the standard library, numpy, pydantic, mlflow (lazily); nothing else of the project.
"""
