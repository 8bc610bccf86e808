"""runners.local.worker_pool: workers of their own, with the job's options and our changes."""

from __future__ import annotations

import json
import os
import threading

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.job import utils as job_utils
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo
from apache_beam.testing.util import assert_that
from apache_beam.transforms import userstate
from apache_beam.transforms.environments import ExternalEnvironment

from runners.local.flink import WorkerPool


class _CountPerKey(beam.DoFn):
    COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())

    def process(self, keyed, count=beam.DoFn.StateParam(COUNT)):  # noqa: B008
        from apache_beam.runners.worker import bundle_processor

        n = (count.read() or 0) + 1
        count.write(n)
        options = json.loads(os.environ.get("PIPELINE_OPTIONS", "{}"))
        commit = bundle_processor.FnApiUserStateContext.commit.__module__
        yield (
            keyed[0],
            n,
            os.getpid(),
            options.get("beam:option:max_cache_memory_usage_mb:v1"),
            commit,
        )


def test_pool_workers_run_apart_with_the_jobs_options_and_the_pipelined_commits(tmp_path):
    # The FnApiRunner hands an EXTERNAL environment's workers to the pool, as Flink does,
    # and serves them the provision info given here (Flink serves the job's options).
    options = {"beam:option:max_cache_memory_usage_mb:v1": 64}
    info = beam_provision_api_pb2.ProvisionInfo(
        retrieval_token="unused", pipeline_options=job_utils.dict_to_struct(options)
    )
    test_pid = os.getpid()
    with WorkerPool(tmp_path) as pool:
        pool_group = pool.process.pid

        def in_pool_workers(rows):
            assert sorted((key, n) for key, n, *_ in rows) == [("a", 1), ("a", 2), ("b", 1)]
            for _, _, pid, cache_mb, commit in rows:
                assert pid != test_pid and os.getpgid(pid) == pool_group
                assert cache_mb == 64
                assert commit == "runners.beam_patches"

        runner = FnApiRunner(
            default_environment=ExternalEnvironment(pool.endpoint),
            provision_info=ExtendedProvisionInfo(info),
        )
        failures = []

        def run():
            try:
                with beam.Pipeline(runner=runner, options=PipelineOptions([])) as pipeline:
                    pairs = pipeline | beam.Create([("a", 1), ("b", 2), ("a", 3)])
                    rows = pairs | beam.ParDo(_CountPerKey())
                    assert_that(rows, in_pool_workers)
            except Exception as exc:  # reported below, in the test's thread
                failures.append(exc)

        # A worker that dies at start leaves the runner waiting for it: bound the wait.
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(120)
        log = (tmp_path / "worker-pool.log").read_text()
        assert not thread.is_alive(), f"no result after 120 s; the pool's log ends:\n{log[-3000:]}"
        assert not failures, failures
    # Beam's SDK worker sizes its state cache from the job's option (64 MB).
    assert "Creating state cache with size 67108864" in log
