"""Job: run the incremental embedder stream (availableNow catch-up or continuous)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    from jobs.cli import parser, setup
    from streaming.runner import Embedder
    from streaming.spark import get_spark

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--trigger", choices=["availableNow", "processingTime"],
                   help="override stream.trigger for this run")
    args = p.parse_args(argv)
    config = setup(args)
    spark = get_spark(config)
    query = Embedder(spark, config).start_stream(args.trigger)
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        log.info("stopping stream (checkpoint keeps the position)")
        query.stop()


if __name__ == "__main__":
    main()
