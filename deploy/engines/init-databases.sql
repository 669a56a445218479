-- Run once by PostgreSQL's entrypoint on an empty volume: MLflow's database is POSTGRES_DB, Optuna gets its own.
CREATE DATABASE optuna;
