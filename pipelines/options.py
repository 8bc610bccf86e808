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
            help="redis:// or rediss:// URL (required: nothing here starts a server).",
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


def unknown_flags(flags: list[str]) -> list[str]:
    """The flags that no options class (Beam's or ours) declares, each with a hint.

    Beam itself only logs ``Unparseable argument`` and runs on; a replay runs on
    a local runner, which reads no flag Beam does not declare, so an unknown one
    is a typo. (A job server's own flags, such as Flink's, are not checked here.)

    >>> unknown_flags(["--runner=FnApiRunner", "--direct_num_workres=2", "stray"])
    ["--direct_num_workres (did you mean '--direct_num_workers'?)", 'stray']
    """
    import difflib

    # Beam's own parser: some options classes declare value-provider arguments on it.
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    classes = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(flags)
    known = [option for action in parser._actions for option in action.option_strings]
    found = []
    for index, arg in enumerate(unknown):
        before = unknown[index - 1] if index else ""
        if not arg.startswith("-") and before.startswith("--") and "=" not in before:
            continue  # the value of the unknown flag before it
        name = arg.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1) if name.startswith("--") else []
        found.append(f"{name} (did you mean {close[0]!r}?)" if close else name)
    return found
