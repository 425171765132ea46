"""Job: run the incremental embedder stream (availableNow catch-up or continuous)."""

from __future__ import annotations

import logging
import signal

log = logging.getLogger(__name__)


# What to do when the source table is missing or empty.
LOAD = "load a catalogue first: `python -m fashion_catalog.jobs.load_catalog` (or check storage.root)"


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--trigger", choices=["availableNow", "processingTime"],
                   help="override stream.trigger for this run")
    args = p.parse_args(argv)
    config = setup(args)
    run(lambda: _run(config, args.trigger), args)


def _run(config, trigger: str | None) -> None:
    from fashion_catalog.streaming.startup import StartupClock

    clock = StartupClock()
    from fashion_catalog.lakehouse.tables import spark_over_rows
    from fashion_catalog.streaming.runner import Embedder

    clock.mark("process")  # the imports above complete the process's own start
    spark = spark_over_rows(config, config.tables.products, "tables.products", LOAD, clock=clock)
    embedder = Embedder(spark, config)
    clock.mark("embedder")
    query = embedder.start_stream(trigger, clock=clock)
    log.info("stream running (query %s)", query.id)
    clock.report_after_first_trigger(query)
    # SIGTERM (a scheduler stopping the job) stops the query like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        log.info("stopping stream (checkpoint keeps the position)")
        query.stop()


if __name__ == "__main__":
    main()
