"""The live pipeline translates for the DataflowRunner in streaming mode (``--dry_run``).

Nothing reaches Google Cloud: with ``dry_run`` Beam translates the pipeline and
builds the job, then stops before credentials, staging or job creation. The
Kafka source is expanded by the project's Java expansion service (Beam's
default Java container for Dataflow, not the Flink runner's EMBEDDED one).
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions
from apache_beam.portability import common_urns

from pipelines.config import load_config
from runners import live
from runners.local.flink import ExpansionService
from tests.conftest import ROOT, key_source_of_tests

dataflow = pytest.importorskip(
    "google.cloud.dataflow", reason="the DataflowRunner needs google-cloud-dataflow-client"
)


def test_the_live_pipeline_translates_for_dataflow_streaming(tmp_path):
    request = live.RunRequest(
        source="kafka://broker.example:9092/events",
        sink="kafka://broker.example:9092/actions",
        redis_url="rediss://user:secret@redis.example:6380/0",
        runner="dataflow",
        config=load_config(ROOT / "examples" / "config.yaml"),
        key_source=key_source_of_tests(),
        dead_letters_dir="/tmp/dead-letters",
    )
    options = PipelineOptions(
        runner="DataflowRunner",
        dry_run="True",
        streaming=True,
        project="example-project",
        region="europe-west1",
        temp_location="gs://example-bucket/tmp",
        job_name="microtarget-dry-run",
        sdk_location="container",
    )
    source = ("broker.example:9092", "events")
    sink = ("broker.example:9092", "actions")
    with ExpansionService(tmp_path, embedded=False) as expansion:
        pipeline = beam.Pipeline(options=options)
        live.build(pipeline, request, source, sink, expansion.endpoint, "r1")
        result = pipeline.run()
    job = result.job
    assert job.proto.type_ == dataflow.JobType.JOB_TYPE_STREAMING
    experiments = set(job.options.view_as(DebugOptions).experiments)
    assert {"enable_streaming_engine", "use_runner_v2"} <= experiments
    proto = job.proto_pipeline
    names = {t.unique_name for t in proto.components.transforms.values()}
    for step in ("ReadKafka/KafkaIO", "DecodeEvents", "UserTimeline", "WriteProfilesToRedis"):
        assert any(name.startswith(step) for name in names), step
    assert common_urns.requirements.REQUIRES_STATEFUL_PROCESSING.urn in proto.requirements
    environments = proto.components.environments.values()
    java = [e for e in environments if b"java" in e.payload]
    python = [e for e in environments if b"python" in e.payload]
    assert java, "the Kafka read runs in Beam's Java container on Dataflow"
    assert python
    # The Kafka read came from the expansion service: Java transforms under ReadKafka.
    kafka_steps = [n for n in names if n.startswith("ReadKafka/KafkaIO/")]
    assert kafka_steps
