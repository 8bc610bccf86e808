"""The pipeline: its graph, config, options and keys."""

import logging


class DropNotices(logging.Filter):
    """Drops Beam's notices that say nothing about this project's jobs."""

    NOTICES = ("apitools not found", "No shards found to finalize")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(notice) for notice in self.NOTICES)


NOTICES = DropNotices()
# Beam logs that Google Cloud clients are missing to the root logger when it is first
# imported, before any command has set up logging: drop it there. Every entry point
# (the CLI, python -m pipelines.personalize) imports this package before Beam.
logging.getLogger().addFilter(NOTICES)
