"""What a waiting stream costs, and how long it takes to start: one run per trigger setting, side by side.

On a drawn demo catalogue (48 products) and a tiny random CLIP, for each ``--setting`` (``<trigger>`` or
``<trigger>@<spark.sql.streaming.pollingDelay>``), the stream job starts as the platform team runs it
(``python -m fashion_catalog.jobs.stream --trigger processingTime``, its own process group). Reported per
setting: launch -> first trigger and the job's own start-up phases (its ``start-up phases`` log line), then,
once the warm-up beside the first trigger is done and nothing is edited, the CPU the job's process group
(Python and its JVM) uses over ``--idle-s`` seconds, in % of one core.

Prints one JSON object. Usage:
  python -m bench.stream_idle --setting "1 second" "0 seconds@10ms" "0 seconds@100ms" [--idle-s 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time


def _group_cpu_ticks(pgid: int) -> int:
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def _wait_for(path: str, text: str, proc: subprocess.Popen, timeout_s: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        with open(path, encoding="utf-8", errors="replace") as fh:
            if text in fh.read():
                return round(time.perf_counter() - started, 2)
        if proc.poll() is not None:
            raise RuntimeError(f"the stream exited with {proc.returncode}; see {path}")
        time.sleep(0.1)
    raise TimeoutError(f"no {text!r} in {path} after {timeout_s}s")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setting", nargs="+", default=["1 second", "0 seconds@10ms", "0 seconds@100ms"])
    p.add_argument("--idle-s", type=float, default=10.0)
    p.add_argument("--work-dir", default=None)
    args = p.parse_args(argv)

    from fashion_catalog.catalog.demo import generate_demo_catalog
    from fashion_catalog.catalog.loader import load_catalog
    from fashion_catalog.conf import load_config
    from fashion_catalog.encoders.random_clip import build_random_clip
    from fashion_catalog.lakehouse.session import get_spark

    work = args.work_dir or tempfile.mkdtemp(prefix="bench-stream-idle-")
    overrides = {"storage.root": work, "catalog.source_dir": os.path.join(work, "catalog"),
                 "model.name_or_path": os.path.join(work, "model"), "model.id": "clip-tiny-random"}
    generate_demo_catalog(overrides["catalog.source_dir"], n_products=48)
    build_random_clip(overrides["model.name_or_path"], shape="tiny")
    config = load_config("local", overrides=overrides, base_dir=work)
    spark = get_spark(config)
    load_catalog(spark, config)
    spark.stop()

    result: dict = {"benchmark": "stream_idle", "cpu_count": os.cpu_count(), "machine": platform.machine(),
                    "idle_s": args.idle_s, "settings": {}}
    for setting in args.setting:
        trigger, _, delay = setting.partition("@")
        sets = {**overrides, "stream.processing_time": trigger}
        if delay:
            sets["spark.conf.spark.sql.streaming.pollingDelay"] = delay
        cmd = [sys.executable, "-m", "fashion_catalog.jobs.stream", "--trigger", "processingTime"]
        for key, value in sets.items():
            cmd += ["--set", f"{key}={value}"]
        log_path = os.path.join(work, f"stream-{len(result['settings'])}.log")
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env=dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYTHONUNBUFFERED="1"))
            try:
                first = _wait_for(log_path, "start-up phases", proc, 600)
                _wait_for(log_path, "Spark warmed up", proc, 600)  # the warm-up beside the first trigger
                time.sleep(2)
                before = _group_cpu_ticks(proc.pid)
                time.sleep(args.idle_s)
                ticks = _group_cpu_ticks(proc.pid) - before
            finally:
                proc.terminate()
                proc.wait(timeout=120)
        with open(log_path, encoding="utf-8") as fh:
            line = next(line for line in fh if "start-up phases" in line)
        result["settings"][setting] = {
            "launch_to_first_trigger_s": first,
            "startup_phases_s": json.loads(line[line.index("{"):]),
            "idle_cpu_pct_of_one_core": round(100 * ticks / os.sysconf("SC_CLK_TCK") / args.idle_s, 1)}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
