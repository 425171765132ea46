"""Job: run the incremental embedder stream (availableNow catch-up or continuous)."""

from __future__ import annotations

import logging
import signal
import uuid

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
    from fashion_catalog.lakehouse.tables import require_rows, spark_over_rows
    from fashion_catalog.streaming.runner import BatchProcessor, Embedder

    clock.mark("process")  # the imports above complete the process's own start
    processor = BatchProcessor(config, uuid.uuid4().hex)
    lane = None
    if config.stream.fast_lane and (trigger or config.stream.trigger) == "processingTime":
        from fashion_catalog.streaming.fast_lane import FastLane

        # Before Spark: the lane needs no JVM, so edits waiting since the last run are applied while it starts.
        require_rows(config.tables.products, "tables.products", LOAD)  # a mistyped root: one line, no model load
        lane = FastLane(config, processor).start()
        lane.wait_loaded()
        clock.mark("fast_lane_model")
    spark = spark_over_rows(config, config.tables.products, "tables.products", LOAD, clock=clock)
    embedder = Embedder(spark, config, processor)
    clock.mark("embedder")
    query = embedder.start_stream(trigger, clock=clock, warm_up=lane is None)
    log.info("stream running (query %s%s)", query.id, ", fast lane on" if lane else "")
    clock.report_after_first_trigger(query)
    # SIGTERM (a scheduler stopping the job) stops the query like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        log.info("stopping stream (checkpoint keeps the position)")
        if lane is not None:
            lane.stop()
        query.stop()


if __name__ == "__main__":
    main()
