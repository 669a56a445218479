"""Fuzz every served task's HTTP API: schemathesis generates requests from the service's own `/docs.json`
(valid and invalid ones), sends them to a real `bentoml serve` on loopback, and counts the answers. Any 5xx
(schemathesis's `not_a_server_error` check) is a bug: bad input must get a 4xx naming the problem.

    python bench/fuzz.py                       # every task with an export under artifacts/ (after `make run`)
    python bench/fuzz.py --tasks tabular digits --cases 1000

`fuzz()` is the harness tests/e2e/test_fuzz.py runs too.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

CASES = 500  # per service, at least


@dataclass
class Report:
    statuses: Counter = field(default_factory=Counter)  # status code -> cases
    server_errors: list[str] = field(default_factory=list)  # a curl command and the answer, per 5xx
    unfuzzable: list[str] = field(default_factory=list)  # operations whose OpenAPI schema cannot be used

    @property
    def cases(self) -> int:
        return sum(self.statuses.values())

    def count(self, low: int) -> int:
        return sum(n for status, n in self.statuses.items() if low <= status < low + 100)


def fuzz(url: str, cases: int = CASES, timeout_s: float = 30) -> Report:
    """At least `cases` generated requests against the service at `url`, spread over its operations that take
    input, half of each operation's share schema-valid and half invalid; the rest (health, metrics) a few each."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import FailedHealthCheck, Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.errors import InvalidSchema
    from schemathesis.core.failures import Failure, FailureGroup

    schema = schemathesis.openapi.from_url(f"{url}/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    takes_input = [op for op in operations if op.body or len(op.query) or len(op.path_parameters)]
    share = math.ceil(cases / max(len(takes_input), 1) / 2)
    report = Report()
    session = requests.Session()

    for op in operations:
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if op in takes_input else (GenerationMode.POSITIVE,)
        for mode in modes:
            budget = share if op in takes_input else 3

            @settings(
                max_examples=budget,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case) -> None:
                response = case.call(base_url=url, session=session, timeout=timeout_s)
                report.statuses[response.status_code] += 1
                try:
                    case.validate_response(response, checks=[not_a_server_error])
                except (Failure, FailureGroup):
                    answer = response.text[:300].replace("\n", " ")
                    report.server_errors.append(f"{response.status_code} {case.as_curl_command()} -> {answer}")

            try:
                with contextlib.suppress(Unsatisfiable, FailedHealthCheck):  # nothing (more) to generate here
                    call()
            except InvalidSchema as err:  # a bug of the service's /docs.json: report it, fuzz the rest
                report.unfuzzable.append(f"{op.label} ({mode}): {str(err).splitlines()[0]}")
    return report


def main() -> None:
    from bench import servers
    from components.config import load_params
    from serving.bundle import describe
    from serving.families import NothingToServe, family_of

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="*", help="default: every task of params.yaml or with an export")
    parser.add_argument("--cases", type=int, default=CASES, help="at least this many requests per service")
    parser.add_argument("--artifacts", type=Path, default=servers.ARTIFACTS, help="folder of <task>/ exports")
    args = parser.parse_args()
    params = load_params(servers.ROOT / "params.yaml")
    exported = [p.name for p in args.artifacts.iterdir()] if args.artifacts.is_dir() else []
    tasks = args.tasks or sorted({*params["train"], *exported})

    print(f"{'service':<18} {'cases':>6} {'2xx':>6} {'4xx':>6} {'5xx':>5}")
    failed = False
    with tempfile.TemporaryDirectory(prefix="dlpipe-fuzz-") as tmp:
        for task in tasks:
            export = servers.export_of(task, args.artifacts)
            if export is None:
                print(f"{task:<18} skipped: no {args.artifacts}/{task}/model.onnx (`make run` exports every task)")
                continue
            try:
                family_of(describe(task, model_dir=export))
            except NothingToServe as err:
                print(f"{task:<18} skipped: {err}")
                continue
            with servers.bentoml(task, export, Path(tmp)) as server:
                report = fuzz(server.url, args.cases)
            print(f"{task:<18} {report.cases:>6} {report.count(200):>6} {report.count(400):>6} {report.count(500):>5}")
            for error in report.server_errors[:5]:
                print(f"    {error}")
            if report.server_errors:  # what the server logged before its last 500 (BentoML logs 400s too)
                log = (Path(tmp) / f"{task}.log").read_text()
                end = log.rfind('"status": 500')
                print("    server log before the last 500:\n" + log[log.rfind("Traceback", 0, end) : end][:4000])
            for problem in report.unfuzzable:
                print(f"    not fuzzed, invalid OpenAPI: {problem}")
            failed |= bool(report.server_errors or report.unfuzzable)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
