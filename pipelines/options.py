"""Pipeline options of ``python -m pipelines.personalize`` (next to Beam's own flags)."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


class PersonalizeOptions(PipelineOptions):
    """microtarget's own flags; every other flag is Beam's (``--runner``, ...)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input",
            action="append",
            default=None,
            help="Recorded event files: Avro containers or JSON lines; globs; repeatable.",
        )
        parser.add_argument("--config", default=None, help="YAML config file (see examples/).")
        parser.add_argument(
            "--redis",
            default=None,
            help="redis:// or rediss:// URL; without it an embedded Redis is started.",
        )
        parser.add_argument("--namespace", default="default", help="Key namespace in Redis.")
        parser.add_argument(
            "--dead_letters", default=None, help="Folder for dead-letter JSON lines files."
        )
        parser.add_argument("--summary_json", default=None, help="Write the run summary here.")
        parser.add_argument(
            "--pseudonym_key_file",
            default=None,
            help="File holding the pseudonym key (else $MICROTARGET_PSEUDONYM_KEY).",
        )
        parser.add_argument(
            "--insecure_dev_key",
            action="store_true",
            help="Run with the public development pseudonym key (demos and tests only).",
        )
