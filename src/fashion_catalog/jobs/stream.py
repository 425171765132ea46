"""Job: run the incremental embedder stream (availableNow catch-up or continuous)."""

from __future__ import annotations

import logging
import signal

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, setup
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.streaming.runner import Embedder

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--trigger", choices=["availableNow", "processingTime"],
                   help="override stream.trigger for this run")
    args = p.parse_args(argv)
    config = setup(args)
    query = Embedder(get_spark(config), config).start_stream(args.trigger)
    log.info("stream running (query %s)", query.id)
    # SIGTERM (a scheduler stopping the job) stops the query like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        log.info("stopping stream (checkpoint keeps the position)")
        query.stop()


if __name__ == "__main__":
    main()
