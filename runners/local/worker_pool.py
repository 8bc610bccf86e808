"""A Beam worker pool whose worker processes get the job's worker settings.

``python -m runners.local.worker_pool --service_port=PORT`` serves Beam's worker
pool API (an EXTERNAL environment: ``--environment_config=HOST:PORT``) and
starts one Python process per worker the runner asks for, like Beam's
``apache_beam.runners.worker.worker_pool_main``. The difference is what runs
in those processes. Beam's pool starts each as ``SdkHarness(...)`` with the
state cache at 0 and without the job's options, so ``--max_cache_memory_usage_mb``
never reaches it and every state read is a round trip to the runner. Here a
worker first asks the runner's provision service for the job's options, as
Beam's SDK container does, applies this project's worker changes
(``runners.beam_patches``: Beam's state cache sizing without the module
globals walk, state commits sent together), and then runs Beam's own
``sdk_worker_main``, which sizes the cache from the options.

Written by hand because Beam's pool has no hook for either: its only other
mode runs an SDK container executable, which needs Docker's boot program.
The pool is stopped by stopping its process group (``runners.local.flink.WorkerPool``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback

log = logging.getLogger(__name__)


def _pool_class():
    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    from runners import beam_patches

    if not beam_patches.apply("worker_pool")["worker_pool"]:
        return BeamFnExternalWorkerPoolServicer  # Beam's own: workers without the job's options

    class Pool(BeamFnExternalWorkerPoolServicer):
        def StartWorker(self, request, unused_context):  # noqa: N802 (the gRPC method)
            try:
                command = [
                    sys.executable,
                    "-m",
                    "runners.local.worker_pool",
                    "--worker",
                    f"--id={request.worker_id}",
                    f"--control_endpoint={request.control_endpoint.url}",
                    f"--logging_endpoint={request.logging_endpoint.url}",
                    f"--provision_endpoint={request.provision_endpoint.url}",
                ]
                log.info("starting worker %s", request.worker_id)
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, close_fds=True)
                self._worker_processes[request.worker_id] = process
                return beam_fn_api_pb2.StartWorkerResponse()
            except Exception:
                return beam_fn_api_pb2.StartWorkerResponse(error=traceback.format_exc())

    return Pool


def provision_info(endpoint: str, worker_id: str):
    """The runner's provision info for this worker: the job's options among it."""
    import grpc
    from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc

    with grpc.insecure_channel(endpoint) as channel:
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        response = stub.GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(),
            metadata=[("worker_id", worker_id)],
            timeout=60,
        )
    return response.info


def worker_environment(args, info) -> dict[str, str]:
    """The environment Beam's ``sdk_worker_main`` reads, as Beam's SDK container sets it."""
    from apache_beam.portability.api import endpoints_pb2
    from google.protobuf import json_format, text_format

    def descriptor(url: str) -> str:
        return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))

    options = _whole_numbers(json_format.MessageToDict(info.pipeline_options))
    env = {
        "WORKER_ID": args.id,
        "PIPELINE_OPTIONS": json.dumps(options),
        "CONTROL_API_SERVICE_DESCRIPTOR": descriptor(args.control_endpoint),
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities),
    }
    if args.logging_endpoint:
        env["LOGGING_API_SERVICE_DESCRIPTOR"] = descriptor(args.logging_endpoint)
    return env


def _whole_numbers(value):
    """Protobuf's Struct holds every number as a double; integer options need ``64``, not ``64.0``.

    >>> _whole_numbers({"a": 64.0, "b": [1.5, 2.0], "c": "x"})
    {'a': 64, 'b': [1.5, 2], 'c': 'x'}
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _run_worker(args) -> None:
    from apache_beam.runners.worker import sdk_worker_main

    from runners import beam_patches

    info = provision_info(args.provision_endpoint, args.id)
    os.environ.update(worker_environment(args, info))
    beam_patches.apply_worker()
    sdk_worker_main.main([])


def _serve(host: str, port: int) -> None:
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.utils import thread_pool_executor

    # Beam's own BeamFnExternalWorkerPoolServicer.start binds every address ("[::]");
    # this one binds --host (127.0.0.1 unless told otherwise).
    server = grpc.server(
        thread_pool_executor.shared_unbounded_instance(),
        options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)],
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    pool = _pool_class()(use_process=True)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    log.info("worker pool listening at %s:%s", host, bound)
    # Stopped with SIGTERM (or Ctrl-C), it takes its workers with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    finally:
        for process in list(pool._worker_processes.values()):
            process.terminate()
        server.stop(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runners.local.worker_pool", description=__doc__
    )
    parser.add_argument("--service_port", type=int, help="the pool's port (required)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every one)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--id", help=argparse.SUPPRESS)
    parser.add_argument("--control_endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--logging_endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--provision_endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.worker:
        _run_worker(args)
    else:
        if not args.service_port:
            parser.error("--service_port is required")
        _serve(args.host, args.service_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
